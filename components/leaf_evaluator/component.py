"""LeafEvaluator: evaluates one deployment-tree leaf (Beam), gates it on the user's requirements and
on preservation, and blesses it (collabopt.LeafBlessing) or says why not."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts, common, keys
from collabopt.components.leaf_evaluator import executor
from collabopt.schemas.defaults import DEFAULTS


class LeafEvaluatorSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        keys.PATH: ExecutionParameter(type=str),       # the leaf's deployment-tree path, e.g. prune_cluster_pcqat
        "requirements": ExecutionParameter(type=str),  # JSON: the config's requirements section
        **common.parameters("push", ("destination",)),  # compare with the leaf deployed there ("" = no)
        **common.parameters("tflm", ("check_examples",)),  # eval examples TFLM runs next to LiteRT
        **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS,
    }
    INPUTS = {
        keys.TFLITE_MODEL_KEY: ChannelParameter(type=artifacts.TFLiteModel),
        keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),  # what was converted
        keys.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        keys.NPU_MODEL_KEY: ChannelParameter(type=artifacts.NPUModel, optional=True),  # its Vela numbers
        keys.BASELINE_KEY: ChannelParameter(type=artifacts.LeafEvaluation, optional=True),  # the PTQ leaf
    }
    OUTPUTS = {keys.EVALUATION_KEY: ChannelParameter(type=artifacts.LeafEvaluation),
               keys.BLESSING_KEY: ChannelParameter(type=artifacts.LeafBlessing)}


class LeafEvaluator(base_component.BaseComponent):
    """Outputs `evaluation` (collabopt.LeafEvaluation: fp32/int8 accuracy, sizes, sparsity, distinct
    values, per-target Vela numbers `<target>.<key>` from the NPUModel, the gate's reasons) and
    `blessing` (collabopt.LeafBlessing with custom property blessed = 1/0, as TFX's Evaluator writes
    it, so TFX conditionals can gate on it).

    Args:
      tflite_model: the leaf's INT8 model; model: the Keras model it was converted from (FP32 or
        fake-INT8 accuracy); examples: the eval split is read with Beam.
      path: the leaf's deployment-tree path.
      npu_model: the leaf's NPUCompiler output: its numbers are judged, nothing is compiled again.
      baseline: the reference (ptq) leaf's evaluation: accuracy drops are measured against it.
      requirements: the config's requirements section (checked by the config schema).
      destination: a push destination: the leaf must also be not worse than the one deployed there.
      check_examples: the first eval examples TFLM's interpreter runs next to LiteRT (tflm.check_examples).
      training: the config's `training` section (loss, metrics, eval_metric, top_k); None: defaults.
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = LeafEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, examples: types.BaseChannel, path: str,
                 model: types.BaseChannel = None, npu_model: types.BaseChannel = None,
                 baseline: types.BaseChannel = None, requirements=None, destination=None, training=None,
                 check_examples=DEFAULTS["tflm"]["check_examples"], **data_kwargs):
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must name the leaf's deployment-tree path, got {path!r}")
        super().__init__(spec=LeafEvaluatorSpec(
            tflite_model=tflite_model, model=model, examples=examples, npu_model=npu_model, baseline=baseline,
            path=path, requirements=executor.encode_requirements(requirements, training),
            **common.encode("push", destination=destination),
            **common.encode("tflm", check_examples=check_examples),
            evaluation=types.Channel(type=artifacts.LeafEvaluation),
            blessing=types.Channel(type=artifacts.LeafBlessing), **common.data_params(**data_kwargs),
            **common.training_params(training)))
