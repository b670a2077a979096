"""BaselineTrainer executor: decode (and check again), call core.stages.train_baseline, record metrics."""
from collabopt.components import common, keys
from collabopt.components.baseline_trainer import PARAMETERS, SECTION
from collabopt.core import stages



class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.MODEL_KEY)
        with self.resumable(input_dict, out, exec_properties):  # epoch checkpoints: a rerun resumes
            metrics = stages.train_baseline(
                common.data_spec(input_dict, exec_properties), out.uri,
                **common.decode(SECTION, exec_properties, PARAMETERS),
                fit=common.fit_spec(SECTION, exec_properties), training=common.training_spec(exec_properties))
        common.record(out, metrics)
