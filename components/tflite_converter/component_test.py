"""TFLiteConverter component: construction, encoded exec_properties, output type, parameters checked
by the config schema."""
import pytest

from collabopt.components import TFLiteConverter, TFLiteModel, keys
from collabopt.components.tflite_converter import executor
from collabopt.tests.helpers import config_error, encoded_data, encoded_training, model_stage_channels, output_types


def test_construct():
    converter = TFLiteConverter(**model_stage_channels(), representative_samples=50, train_limit=100)
    assert output_types(converter) == {keys.TFLITE_MODEL_KEY: TFLiteModel.TYPE_NAME}
    assert TFLiteModel.TYPE_NAME == "collabopt.TFLiteModel"
    assert set(converter.inputs) == {keys.MODEL_KEY, keys.EXAMPLES_KEY}
    assert converter.EXECUTOR_SPEC.executor_class is executor.Executor
    assert converter.exec_properties == {"representative_samples": 50, **encoded_data(train_limit=100), **encoded_training()}
    assert TFLiteConverter(**model_stage_channels()).exec_properties["representative_samples"] == 200


@pytest.mark.parametrize("params, message", [
    ({"representative_samples": 0}, "convert.representative_samples: 0 is less than the minimum of 1"),
    ({"representative_samples": "50"}, "convert.representative_samples: '50' is not of type 'integer'"),
    ({"feature_shape": [28, 0]}, "data.feature_shape.1: 0 is less than the minimum of 1"),
    ({"feature_shape": []}, "data.feature_shape: [] should be non-empty"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(TFLiteConverter, **model_stage_channels(), **params) == message
