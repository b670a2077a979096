"""LeafPusher executor: decode; an unblessed leaf is marked not pushed, a blessed one goes through
core.deploy.push_leaf."""
import logging

from tfx.types import artifact_utils

from collabopt.components import common, keys
from collabopt.core import deploy


class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.PUSHED_MODEL_KEY)
        blessing = artifact_utils.get_single_instance(input_dict[keys.BLESSING_KEY])
        path = exec_properties[keys.PATH]
        if blessing.get_int_custom_property(keys.BLESSED) != 1:
            logging.getLogger("collabopt").info("leaf %s is not blessed: not pushed", path)
            common.record(out, {keys.PUSHED: 0, keys.PATH: path})
            return
        destination = common.decode("push", exec_properties, ("destination",), required=("destination",))["destination"]
        version, folder = deploy.push_leaf(
            path, common.single_uri(input_dict, keys.TFLITE_MODEL_KEY),
            common.single_uri(input_dict, keys.EVALUATION_KEY), destination,
            npu_dir=common.optional_uri(input_dict, keys.NPU_MODEL_KEY))
        common.record(out, {keys.PUSHED: 1, "pushed_destination": folder, "pushed_version": version, keys.PATH: path})
