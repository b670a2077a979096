"""ChannelPruner: channel pruning for the NPU, a smaller dense Keras model fine-tuned on Examples."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.channel_pruner import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class ChannelPrunerSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS), **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS,
                  **common.fit_parameters(SECTION)}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {keys.THINNED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ChannelPruner(base_component.BaseComponent):
    """Outputs `thinned_model` (standard Model: SavedModel under Format-Serving/): the model with fewer
    output channels, cut by surgery and fine-tuned; its Vela cycles before and after on npu_target, the
    widths and the layers left at full width as MLMD properties / in stats.json.

    Args:
      model: the Model channel to thin (a tf_keras SavedModel, or a Trainer's Format-Serving/).
      examples: the Examples channel it is fine-tuned on.
      keep_ratio: keep this fraction of the thinnable channels; not used with target_cycles.
      target_cycles: thin until Vela's cycles are at most this (<= 1: a fraction of the model's own).
      npu_target: the Ethos-U whose per-layer cycles and channel blocks (8 on U55/U65, 16 on U85) choose.
      score: 'l1' (L1 norm of each output channel's kernel) or 'bn' (the BatchNormalization scale after it).
      min_keep: no channel group keeps less than this fraction of its width.
      exclude_layers: layer names or regexes to keep at full width; layers surgery cannot see through
        stay at full width too, each named in stats.json (`excluded_layers`).
      strict: fail instead, listing every layer surgery cannot thin.
      distill: in [0, 1]; this fraction of the fine-tuning loss is the distance to the input model's
        outputs (KL for a classifier, MSE otherwise), the rest the training loss; 0: labels only.
      distill_temperature: softens both class distributions of distill's KL.
      epochs, batch_size, learning_rate, seed: the fine-tuning.
      training: the config's `training` section; None: defaults.
      **data_kwargs: as Pruner's.
    """
    SPEC_CLASS = ChannelPrunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, keep_ratio=D["keep_ratio"],
                 target_cycles=D["target_cycles"], npu_target=D["npu_target"], score=D["score"],
                 min_keep=D["min_keep"], exclude_layers=D["exclude_layers"], strict=D["strict"], distill=D["distill"],
                 distill_temperature=D["distill_temperature"], epochs=D["epochs"], batch_size=D["batch_size"],
                 learning_rate=D["learning_rate"], seed=D["seed"], training=None, **data_kwargs):
        super().__init__(spec=ChannelPrunerSpec(
            model=model, examples=examples, thinned_model=types.Channel(type=standard_artifacts.Model),
            **common.encode(SECTION, keep_ratio=keep_ratio, target_cycles=target_cycles, npu_target=npu_target,
                            score=score, min_keep=min_keep, exclude_layers=list(exclude_layers), strict=strict,
                            distill=distill, distill_temperature=distill_temperature),
            **common.fit_params(SECTION, epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs),
            **common.training_params(training)))
