"""LatestPushedModel: the latest blessed baseline, as a TFX Pusher deployed it (runs on KFP too)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components.latest_pushed_model import executor


class LatestPushedModelSpec(component_spec.ComponentSpec):
    PARAMETERS = {"base_directory": ExecutionParameter(type=str)}
    INPUTS = {}
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}


class LatestPushedModel(base_component.BaseComponent):
    """Outputs `model` (standard Model): a copy of the newest <base_directory>/<version>/ SavedModel,
    looked up when the run executes, not when the pipeline is compiled; custom properties
    `source_uri`, `version`. KFP's backend runs no TFX resolvers, so scheduled runs use this."""
    SPEC_CLASS = LatestPushedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, base_directory: str):
        if not isinstance(base_directory, str) or not base_directory:
            raise ValueError(f"base_directory must be a TFX Pusher destination folder, got {base_directory!r}")
        super().__init__(spec=LatestPushedModelSpec(base_directory=base_directory,
                                                    model=types.Channel(type=standard_artifacts.Model)))
