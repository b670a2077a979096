"""BaselineTrainer executor: decode, call core.stages.train_baseline, record metrics."""
from collabopt.components import common
from collabopt.core import stages


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "model")
        metrics = stages.train_baseline(
            common.data_spec(input_dict, exec_properties), out.uri, width=int(exec_properties["width"]),
            blocks=int(exec_properties["blocks"]), num_classes=int(exec_properties["num_classes"]),
            fit=common.fit_spec(exec_properties))
        common.record(out, metrics)
