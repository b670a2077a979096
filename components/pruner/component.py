"""Pruner: magnitude pruning of a Keras model to a target sparsity (or M:N), fine-tuned on Examples."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.pruner import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class PrunerSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS), **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS,
                  **common.fit_parameters(SECTION)}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {keys.PRUNED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class Pruner(base_component.BaseComponent):
    """Outputs `pruned_model` (standard Model: SavedModel under Format-Serving/, stripped of wrappers).

    Args:
      model: the Model channel to prune (a tf_keras SavedModel, or a Trainer's Format-Serving/).
      examples: the Examples channel it is fine-tuned on.
      target_sparsity: fraction of zeros in every prunable kernel, in (0, 1); ignored with m_by_n.
      schedule: 'polynomial' (ramp up during fine-tuning) or 'constant'.
      frequency: pruning step frequency (training steps).
      m_by_n: [M, N] structured sparsity (M zeros in every N weights), e.g. [2, 4]; None: unstructured.
      exclude_layers: layer names or regexes to leave unpruned; layers TFMOT cannot prune are left out
        too, each named in stats.json (`excluded_layers`) and the report.
      strict: fail instead, listing every layer TFMOT cannot prune.
      layer_sparsity: {layer: sparsity}: prune only these layers, each to its own target (per-layer
        schedules of `collabopt search`); target_sparsity is then not used.
      epochs, batch_size, learning_rate, seed: the fine-tuning.
      training: the config's `training` section (target, module_file, loss, metrics, eval_metric, top_k);
        None: defaults.
      **data_kwargs: feature_key, label_key, feature_shape, train_split, eval_split, train_limit, eval_limit,
        scale.
    """
    SPEC_CLASS = PrunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, target_sparsity=D["target_sparsity"],
                 schedule=D["schedule"], frequency=D["frequency"], m_by_n=D["m_by_n"],
                 exclude_layers=D["exclude_layers"], strict=D["strict"], layer_sparsity=D["layer_sparsity"],
                 epochs=D["epochs"], batch_size=D["batch_size"], learning_rate=D["learning_rate"], seed=D["seed"],
                 training=None, **data_kwargs):
        super().__init__(spec=PrunerSpec(
            model=model, examples=examples, pruned_model=types.Channel(type=standard_artifacts.Model),
            **common.encode(SECTION, target_sparsity=target_sparsity, schedule=schedule, frequency=frequency,
                            m_by_n=list(m_by_n) if m_by_n else None, exclude_layers=list(exclude_layers),
                            strict=strict, layer_sparsity=layer_sparsity),
            **common.fit_params(SECTION, epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs),
            **common.training_params(training)))
