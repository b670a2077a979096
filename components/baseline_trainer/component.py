"""BaselineTrainer: trains the DS-CNN-style baseline for the demo (a user's TFX Trainer fits here too)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import common
from collabopt.components.baseline_trainer import executor


class BaselineTrainerSpec(component_spec.ComponentSpec):
    PARAMETERS = {"width": ExecutionParameter(type=int), "blocks": ExecutionParameter(type=int),
                  "num_classes": ExecutionParameter(type=int),
                  **common.DATA_PARAMETERS, **common.FIT_PARAMETERS}
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}


class BaselineTrainer(base_component.BaseComponent):
    """Outputs `model` (standard Model, SavedModel under Format-Serving/ as TFX Trainer writes it)."""
    SPEC_CLASS = BaselineTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, width=64, blocks=4, num_classes=10, epochs=3,
                 batch_size=64, learning_rate=1e-3, seed=0, **data_kwargs):
        for name, v in (("width", width), ("blocks", blocks), ("num_classes", num_classes)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        super().__init__(spec=BaselineTrainerSpec(
            examples=examples, width=width, blocks=blocks, num_classes=num_classes,
            model=types.Channel(type=standard_artifacts.Model),
            **common.fit_params(epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs)))
