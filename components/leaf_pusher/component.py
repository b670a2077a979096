"""LeafPusher: deploys a blessed leaf (INT8 .tflite, its evaluation, Vela output) to a destination."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts, common, keys
from collabopt.components.leaf_pusher import executor


class LeafPusherSpec(component_spec.ComponentSpec):
    PARAMETERS = {keys.PATH: ExecutionParameter(type=str), **common.parameters("push", ("destination",))}
    INPUTS = {keys.TFLITE_MODEL_KEY: ChannelParameter(type=artifacts.TFLiteModel),
              keys.EVALUATION_KEY: ChannelParameter(type=artifacts.LeafEvaluation),
              keys.BLESSING_KEY: ChannelParameter(type=artifacts.LeafBlessing),
              keys.NPU_MODEL_KEY: ChannelParameter(type=artifacts.NPUModel, optional=True)}
    OUTPUTS = {keys.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}


class LeafPusher(base_component.BaseComponent):
    """Copies a blessed leaf to <destination>/<path>/<version>/ and switches <path>/LATEST to it (one
    step, core.deploy.push_leaf): the leaf the next (scheduled) run is compared with. Outputs
    `pushed_model` (standard PushedModel: pushed = 1, pushed_destination, pushed_version); an
    unblessed leaf is not pushed (pushed = 0), as TFX's Pusher does with an unblessed model.

    Args:
      tflite_model, evaluation, blessing: the leaf, its LeafEvaluation and its LeafBlessing.
      path: the leaf's deployment-tree path (its folder under destination).
      destination: a folder or URI.
      npu_model: the leaf's NPUCompiler output, copied under npu/.
    """
    SPEC_CLASS = LeafPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, evaluation: types.BaseChannel, blessing: types.BaseChannel,
                 path: str, destination: str, npu_model: types.BaseChannel = None):
        if not common.placeholder(destination) and (not isinstance(destination, str) or not destination):
            raise ValueError(f"push.destination: must be a folder path or URI, got {destination!r}")
        super().__init__(spec=LeafPusherSpec(
            tflite_model=tflite_model, evaluation=evaluation, blessing=blessing, npu_model=npu_model, path=path,
            **common.encode("push", destination=destination),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
