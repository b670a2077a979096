"""LeafPusher: deploys a blessed leaf (INT8 .tflite, its evaluation, Vela output) to a destination."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts
from collabopt.components.leaf_pusher import executor


class LeafPusherSpec(component_spec.ComponentSpec):
    PARAMETERS = {"path": ExecutionParameter(type=str), "push_destination": ExecutionParameter(type=str)}
    INPUTS = {"tflite_model": ChannelParameter(type=artifacts.TFLiteModel),
              "evaluation": ChannelParameter(type=artifacts.LeafEvaluation),
              "blessing": ChannelParameter(type=artifacts.LeafBlessing),
              "npu_model": ChannelParameter(type=artifacts.NPUModel, optional=True)}
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class LeafPusher(base_component.BaseComponent):
    """Copies the leaf to <push_destination>/<path>/<version>/ and makes it <path>/latest/, the
    leaf the next (scheduled) run is compared with. Refuses an unblessed leaf. Outputs
    `pushed_model` (standard PushedModel: pushed, pushed_destination, pushed_version)."""
    SPEC_CLASS = LeafPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, evaluation: types.BaseChannel, blessing: types.BaseChannel,
                 path: str, push_destination: str, npu_model: types.BaseChannel = None):
        if not isinstance(push_destination, str) or not push_destination:
            raise ValueError(f"push_destination must be a folder path or URI, got {push_destination!r}")
        super().__init__(spec=LeafPusherSpec(
            tflite_model=tflite_model, evaluation=evaluation, blessing=blessing, npu_model=npu_model, path=path,
            push_destination=push_destination, pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
