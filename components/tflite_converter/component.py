"""TFLiteConverter: full-INT8 .tflite from a Keras SavedModel (QAT ranges, or PTQ) plus its analysis."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts, common
from collabopt.components.tflite_converter import executor


class TFLiteConverterSpec(component_spec.ComponentSpec):
    PARAMETERS = {"representative_samples": ExecutionParameter(type=int), **common.DATA_PARAMETERS}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {"tflite_model": ChannelParameter(type=artifacts.TFLiteModel)}


class TFLiteConverter(base_component.BaseComponent):
    """Outputs `tflite_model` (collabopt.TFLiteModel): model.tflite + stats.json, with bytes, gzip bytes,
    saving %, sparsity, distinct values and INT8 accuracy (eval split) as MLMD properties."""
    SPEC_CLASS = TFLiteConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, representative_samples=200,
                 **data_kwargs):
        if not isinstance(representative_samples, int) or representative_samples < 1:
            raise ValueError(f"representative_samples must be an integer >= 1, got {representative_samples!r}")
        super().__init__(spec=TFLiteConverterSpec(
            model=model, examples=examples, representative_samples=representative_samples,
            tflite_model=types.Channel(type=artifacts.TFLiteModel), **common.data_params(**data_kwargs)))
