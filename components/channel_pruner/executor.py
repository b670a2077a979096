"""ChannelPruner executor: decode (and check again) the parameters, call core.stages.thin, record metrics."""
from collabopt.components import common, keys
from collabopt.components.channel_pruner import PARAMETERS, SECTION
from collabopt.core import stages


class Executor(common.PathStage, common.StageExecutor):
    def stage(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.THINNED_MODEL_KEY)
        p = common.decode(SECTION, exec_properties, PARAMETERS)
        with self.resumable(input_dict, out, exec_properties):  # epoch checkpoints: a rerun resumes
            metrics = stages.thin(
                common.single_uri(input_dict, keys.MODEL_KEY), common.data_spec(input_dict, exec_properties), out.uri,
                **p, fit=common.fit_spec(SECTION, exec_properties), training=common.training_spec(exec_properties))
        common.record(out, metrics)
