"""LeafPusher executor: decode, refuse an unblessed leaf, call core.deploy.push_leaf, record."""
from tfx.types import artifact_utils

from collabopt.components import common
from collabopt.core import deploy


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "pushed_model")
        blessing = artifact_utils.get_single_instance(input_dict["blessing"])
        path = exec_properties["path"]
        if blessing.get_int_custom_property("blessed") != 1:
            raise ValueError(f"leaf {path!r} is not blessed; LeafPusher pushes blessed leaves only")
        npu = input_dict.get("npu_model") or []
        version, folder = deploy.push_leaf(
            path, common.single_uri(input_dict, "tflite_model"), common.single_uri(input_dict, "evaluation"),
            exec_properties["push_destination"], npu_dir=npu[0].uri if npu else None)
        common.record(out, {"pushed": 1, "pushed_destination": folder, "pushed_version": version, "path": path})
