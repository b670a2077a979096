"""LatestPushedModel component: construction, encoded exec_properties, output type, parameter checks."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import LatestPushedModel, keys
from collabopt.components.latest_pushed_model import executor
from collabopt.tests.helpers import config_error, output_types


def test_construct():
    latest = LatestPushedModel(pushed_models="/serving/model")
    assert output_types(latest) == {keys.MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert latest.inputs == {}
    assert latest.EXECUTOR_SPEC.executor_class is executor.Executor
    assert latest.exec_properties == {"pushed_models": "/serving/model"}


def test_bad_parameter_is_a_config_error():
    assert config_error(LatestPushedModel, pushed_models=5) == \
        "baseline.pushed_models: 5 is not of type 'string', 'null'"


@pytest.mark.parametrize("value", ["", None])
def test_no_destination(value):
    with pytest.raises(ValueError) as e:
        LatestPushedModel(pushed_models=value)
    assert str(e.value) == f"baseline.pushed_models: must be a TFX Pusher destination folder, got {value!r}"
