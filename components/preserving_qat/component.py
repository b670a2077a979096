"""PreservingQAT: quantization-aware training with the scheme that keeps what the model has."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.preserving_qat import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class PreservingQATSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS), **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS,
                  **common.fit_parameters(SECTION)}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {keys.QAT_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class PreservingQAT(base_component.BaseComponent):
    """Outputs `qat_model`: the QAT SavedModel (fake-quant ops) that TFLiteConverter turns into INT8.

    Args:
      model, examples: the Model to fine-tune and the Examples.
      scheme: 'auto' picks PCQAT for a pruned+clustered model, CQAT for clustered, PQAT for pruned,
        plain QAT otherwise; or one of 'qat', 'pqat', 'cqat', 'pcqat'.
      shared_centroids: keep per-tensor clusters shared across channels (see
        core.optimize._shared_centroids for why TFMOT's default loses compression).
      exclude_layers, strict: as for Pruner (layers TFMOT cannot quantize, e.g. a BatchNormalization
        after an Add, stay float in the QAT model; the INT8 converter calibrates them).
      epochs, batch_size, learning_rate, seed: the fine-tuning.
      training: the config's `training` section (loss, metrics, eval_metric, top_k); None: defaults.
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = PreservingQATSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, scheme=D["scheme"],
                 shared_centroids=D["shared_centroids"], exclude_layers=D["exclude_layers"], strict=D["strict"],
                 epochs=D["epochs"], batch_size=D["batch_size"], learning_rate=D["learning_rate"], seed=D["seed"],
                 training=None, **data_kwargs):
        super().__init__(spec=PreservingQATSpec(
            model=model, examples=examples, qat_model=types.Channel(type=standard_artifacts.Model),
            **common.encode(SECTION, scheme=scheme, shared_centroids=shared_centroids,
                            exclude_layers=list(exclude_layers), strict=strict),
            **common.fit_params(SECTION, epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs),
            **common.training_params(training)))
