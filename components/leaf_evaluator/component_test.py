"""LeafEvaluator component: construction, encoded exec_properties (the requirements as sorted JSON),
optional inputs, output types, parameters checked by the config schema."""
import pytest

from collabopt.schemas.defaults import DEFAULTS
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts

from collabopt.components import LeafBlessing, LeafEvaluation, LeafEvaluator, NPUModel, TFLiteModel, keys
from collabopt.components.leaf_evaluator import executor
from collabopt.tests.helpers import channel, config_error, encoded_data, encoded_training, output_types


def _inputs():
    return {keys.TFLITE_MODEL_KEY: channel(TFLiteModel), keys.EXAMPLES_KEY: channel(standard_artifacts.Examples)}


def test_construct_with_every_input():
    inputs = {**_inputs(), keys.MODEL_KEY: channel(standard_artifacts.Model), keys.NPU_MODEL_KEY: channel(NPUModel),
              keys.BASELINE_KEY: channel(LeafEvaluation)}
    evaluator = LeafEvaluator(
        **inputs, path="prune_ptq", destination="/deploy", eval_limit=100,
        requirements={"max_int8_accuracy_drop_pp": 2.5, "max_gzip_bytes": 20000, "npu_target": None})
    assert output_types(evaluator) == {keys.EVALUATION_KEY: "collabopt.LeafEvaluation",
                                       keys.BLESSING_KEY: "collabopt.LeafBlessing"}
    assert (LeafEvaluation.TYPE_NAME, LeafBlessing.TYPE_NAME) == ("collabopt.LeafEvaluation", "collabopt.LeafBlessing")
    assert evaluator.inputs == inputs
    assert isinstance(evaluator.EXECUTOR_SPEC, executor_spec.BeamExecutorSpec)  # evaluation runs on Beam
    assert evaluator.EXECUTOR_SPEC.executor_class is executor.Executor
    assert evaluator.exec_properties == {
        keys.PATH: "prune_ptq", "destination": "/deploy", **encoded_data(eval_limit=100), **encoded_training(),
        "check_examples": DEFAULTS["tflm"]["check_examples"],
        # sorted keys, unset (None) requirements left out
        "requirements": '{"max_gzip_bytes": 20000, "max_int8_accuracy_drop_pp": 2.5}'}


def test_construct_with_required_inputs_only():
    evaluator = LeafEvaluator(**_inputs(), path="ptq")
    assert set(evaluator.inputs) == {keys.TFLITE_MODEL_KEY, keys.EXAMPLES_KEY}
    assert evaluator.exec_properties == {keys.PATH: "ptq", "requirements": "{}", "destination": "", **encoded_data(),
                                         **encoded_training(), "check_examples": DEFAULTS["tflm"]["check_examples"]}


@pytest.mark.parametrize("params, message", [
    ({"requirements": {"max_gzip_bytes": -5}}, "requirements.max_gzip_bytes: -5 is less than the minimum of 1"),
    ({"requirements": {"max_latency_ms": 3}},
     "requirements: Additional properties are not allowed ('max_latency_ms' was unexpected)"),
    ({"requirements": {"max_npu_inference_time_s": 0}},
     "requirements.max_npu_inference_time_s: 0 is less than or equal to the minimum of 0"),
    ({"requirements": {"npu_target": "ethos-u65-256"}},
     "requirements.npu_target: set, but max_npu_inference_time_s is not"),
    ({"destination": ""}, "push.destination: '' should be non-empty"),
    ({"feature_key": ""}, "data.feature_key: '' should be non-empty"),
    ({"training": {"eval_metric": "mse"}, "requirements": {"max_int8_accuracy_drop_pp": 1.0}},
     "requirements.max_int8_accuracy_drop_pp: judges top-1 accuracy, but training.eval_metric is 'mse'; "
     "use requirements.max_metric_drop (in mse's units)"),
    ({"training": {"top_k": 0}}, "training.top_k: 0 is less than the minimum of 1"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(LeafEvaluator, **_inputs(), path="ptq", **params) == message


@pytest.mark.parametrize("path", ["", None])
def test_no_path(path):
    with pytest.raises(ValueError) as e:
        LeafEvaluator(**_inputs(), path=path)
    assert str(e.value) == f"path must name the leaf's deployment-tree path, got {path!r}"
