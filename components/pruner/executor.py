"""Pruner executor: decode artifacts and properties, call core.stages.prune, record metrics."""
import json

from collabopt.components import common
from collabopt.core import stages


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "pruned_model")
        m_by_n = json.loads(exec_properties["m_by_n"]) if exec_properties.get("m_by_n") else None
        metrics = stages.prune(
            common.single_uri(input_dict, "model"), common.data_spec(input_dict, exec_properties), out.uri,
            target_sparsity=float(exec_properties["target_sparsity"]), schedule=exec_properties["schedule"],
            frequency=int(exec_properties["frequency"]), m_by_n=m_by_n, fit=common.fit_spec(exec_properties))
        common.record(out, metrics)
