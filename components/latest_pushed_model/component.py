"""LatestPushedModel: the latest blessed baseline, as a TFX Pusher deployed it (runs on KFP too)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.latest_pushed_model import executor


class LatestPushedModelSpec(component_spec.ComponentSpec):
    PARAMETERS = common.parameters("baseline", ("pushed_models",))
    INPUTS = {}
    OUTPUTS = {keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class LatestPushedModel(base_component.BaseComponent):
    """Outputs `model` (standard Model): a copy of the newest <base_directory>/<version>/ SavedModel,
    looked up when the run executes, not when the pipeline is compiled; custom properties
    `source_uri`, `version`. KFP's backend runs no TFX resolvers, so scheduled runs use this.

    Args:
      pushed_models: a TFX Pusher destination (<dir>/<integer version>/ SavedModels).
    """
    SPEC_CLASS = LatestPushedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
    CACHEABLE = False  # the same parameters find a newer model once one is pushed (runners.run reads this)

    def __init__(self, pushed_models: str):
        if not pushed_models:
            raise ValueError(f"baseline.pushed_models: must be a TFX Pusher destination folder, got {pushed_models!r}")
        super().__init__(spec=LatestPushedModelSpec(model=types.Channel(type=standard_artifacts.Model),
                                                    **common.encode("baseline", pushed_models=pushed_models)))
