"""LatestPushedModel executor: call core.deploy.latest_pushed_model, record where it came from."""
from collabopt.components import common
from collabopt.core import deploy


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "model")
        version, folder = deploy.latest_pushed_model(exec_properties["base_directory"], out.uri)
        common.record(out, {"source_uri": folder, "version": version})
