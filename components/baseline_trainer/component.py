"""BaselineTrainer: trains the DS-CNN-style baseline for the demo (a user's TFX Trainer fits here too)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.baseline_trainer import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class BaselineTrainerSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS), **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS,
                  **common.fit_parameters(SECTION)}
    INPUTS = {keys.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class BaselineTrainer(base_component.BaseComponent):
    """Outputs `model` (standard Model, SavedModel under Format-Serving/ as TFX Trainer writes it).

    Args:
      examples: the Examples to train on (train split) and evaluate on (eval split).
      width, blocks: the DS-CNN's channels and depthwise-separable blocks.
      num_classes: output classes (logits).
      epochs, batch_size, learning_rate, seed: the training.
      training: the config's `training` section (loss, metrics, eval_metric, top_k); None: defaults.
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = BaselineTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, width=D["width"], blocks=D["blocks"],
                 num_classes=D["num_classes"], epochs=D["epochs"], batch_size=D["batch_size"],
                 learning_rate=D["learning_rate"], seed=D["seed"], training=None, **data_kwargs):
        super().__init__(spec=BaselineTrainerSpec(
            examples=examples, model=types.Channel(type=standard_artifacts.Model),
            **common.encode(SECTION, width=width, blocks=blocks, num_classes=num_classes),
            **common.fit_params(SECTION, epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs),
            **common.training_params(training)))
