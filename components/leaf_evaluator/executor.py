"""LeafEvaluator executor: decode, call core.stages.evaluate_leaf with this executor's Beam
pipeline (the TFX pipeline's beam_pipeline_args), record metrics and the blessing."""
import json

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from collabopt.components import common
from collabopt.core import stages


def _optional_uri(input_dict, key):
    arts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(arts).uri if arts else None


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        common.setup_logging()
        evaluation, blessing = common.output(output_dict, "evaluation"), common.output(output_dict, "blessing")
        leaf = stages.evaluate_leaf(
            exec_properties["path"], common.single_uri(input_dict, "tflite_model"),
            _optional_uri(input_dict, "model"), common.data_spec(input_dict, exec_properties), evaluation.uri,
            npu_targets=json.loads(exec_properties["npu_targets"]),
            system_config=exec_properties.get("system_config") or None,
            requirements=json.loads(exec_properties["requirements"] or "{}"),
            baseline_dir=_optional_uri(input_dict, "baseline"), make_pipeline=self._make_beam_pipeline,
            push_destination=exec_properties.get("push_destination") or None)
        common.record(evaluation, {k: v for k, v in leaf.items() if k not in ("npu", "reasons")})
        for target, est in leaf["npu"].items():
            common.record(evaluation, est, prefix=f"{target}.")
        # reasons as a JSON list: a preservation reason holds several layers itself
        common.record(evaluation, {"npu_targets": ",".join(leaf["npu"]), "reasons": json.dumps(leaf["reasons"]),
                                   "preservation_failures": "; ".join(leaf["preservation_failures"])})
        verdict = {"blessed": leaf["blessed"], "path": leaf["path"], "reasons": json.dumps(leaf["reasons"])}
        common.record(blessing, verdict)
        common.record(evaluation, {"blessed": leaf["blessed"]})
