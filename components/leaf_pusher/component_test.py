"""LeafPusher component: construction, encoded exec_properties, optional NPU input, output type."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import LeafBlessing, LeafEvaluation, LeafPusher, NPUModel, TFLiteModel, keys
from collabopt.components.leaf_pusher import executor
from collabopt.tests.helpers import channel, output_types


def _inputs():
    return {keys.TFLITE_MODEL_KEY: channel(TFLiteModel), keys.EVALUATION_KEY: channel(LeafEvaluation),
            keys.BLESSING_KEY: channel(LeafBlessing)}


def test_construct():
    inputs = {**_inputs(), keys.NPU_MODEL_KEY: channel(NPUModel)}
    pusher = LeafPusher(**inputs, path="prune_cluster_pcqat", destination="gs://bucket/leaves")
    assert output_types(pusher) == {keys.PUSHED_MODEL_KEY: standard_artifacts.PushedModel.TYPE_NAME}
    assert pusher.inputs == inputs
    assert pusher.EXECUTOR_SPEC.executor_class is executor.Executor
    assert pusher.exec_properties == {keys.PATH: "prune_cluster_pcqat", "destination": "gs://bucket/leaves"}


def test_npu_model_is_optional():
    pusher = LeafPusher(**_inputs(), path="ptq", destination="/deploy")
    assert set(pusher.inputs) == {keys.TFLITE_MODEL_KEY, keys.EVALUATION_KEY, keys.BLESSING_KEY}


@pytest.mark.parametrize("destination", ["", None])
def test_no_destination(destination):
    with pytest.raises(ValueError) as e:
        LeafPusher(**_inputs(), path="ptq", destination=destination)
    assert str(e.value) == f"push.destination: must be a folder path or URI, got {destination!r}"
