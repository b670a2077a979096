"""TFLiteConverter: full-INT8 .tflite from a Keras SavedModel (QAT ranges, or PTQ) plus its analysis."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec
from tfx.types.component_spec import ChannelParameter

from collabopt.components import artifacts, common, keys
from collabopt.components.tflite_converter import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class TFLiteConverterSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS), **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {keys.TFLITE_MODEL_KEY: ChannelParameter(type=artifacts.TFLiteModel)}


class TFLiteConverter(base_component.BaseComponent):
    """Outputs `tflite_model` (collabopt.TFLiteModel): model.tflite + stats.json, with bytes, gzip bytes,
    saving %, sparsity, distinct values and INT8 accuracy (eval split) as MLMD properties.

    Args:
      model: a Keras SavedModel (a QAT model converts with its own ranges; any other by PTQ).
      examples: representative samples come from the train split, INT8 accuracy from the eval split.
      representative_samples: how many train samples calibrate PTQ.
      training: the config's `training` section (loss, metrics, eval_metric, top_k); None: defaults.
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = TFLiteConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 representative_samples=D["representative_samples"], training=None, **data_kwargs):
        super().__init__(spec=TFLiteConverterSpec(
            model=model, examples=examples, tflite_model=types.Channel(type=artifacts.TFLiteModel),
            **common.encode(SECTION, representative_samples=representative_samples),
            **common.data_params(**data_kwargs),
            **common.training_params(training)))
