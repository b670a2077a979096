"""LatestPushedModel executor: call core.deploy.latest_pushed_model, record where it came from."""
from collabopt.components import common, keys
from collabopt.core import deploy


class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.MODEL_KEY)
        pushed = common.decode("baseline", exec_properties, ("pushed_models",), required=("pushed_models",))["pushed_models"]
        version, folder = deploy.latest_pushed_model(pushed, out.uri)
        common.record(out, {"source_uri": folder, "version": version})
