"""Preflight: the baseline converted to full INT8 once, before any node fine-tunes (core.tflite.preflight)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec

from collabopt.components import common
from collabopt.components.preflight import executor


class PreflightSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {}


class Preflight(base_component.BaseComponent):
    """No outputs: the nodes that read the baseline run after it (pipelines.nodes.after_preflight), so
    its failure stops the run before any fine-tuning.

    Args:
      model: the baseline (a Keras SavedModel, or a .keras/.h5 file).
      examples: a handful of train examples calibrate the conversion.
      training: the config's `training` section (a module_file's input_fn reads the examples).
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = PreflightSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, training=None, **data_kwargs):
        super().__init__(spec=PreflightSpec(model=model, examples=examples, **common.data_params(**data_kwargs),
                                            **common.training_params(training)))
