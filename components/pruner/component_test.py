"""Pruner component: construction, encoded exec_properties, output type, parameters checked by the
config schema."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import Pruner, keys
from collabopt.components.pruner import executor
from collabopt.tests.helpers import config_error, encoded_data, encoded_training, model_stage_channels, output_types


def test_construct_with_defaults():
    channels = model_stage_channels()
    pruner = Pruner(**channels)
    assert output_types(pruner) == {keys.PRUNED_MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert pruner.inputs[keys.MODEL_KEY] is channels[keys.MODEL_KEY]
    assert pruner.inputs[keys.EXAMPLES_KEY] is channels[keys.EXAMPLES_KEY]
    assert pruner.EXECUTOR_SPEC.executor_class is executor.Executor
    assert pruner.exec_properties == {
        "target_sparsity": 0.5, "schedule": "polynomial", "frequency": 100, "m_by_n": "",  # None travels as ""
        "epochs": 2, "batch_size": 64, "learning_rate": 1e-4, "seed": 0, "exclude_layers": "[]", "strict": "false", "layer_sparsity": "",
        **encoded_data(), **encoded_training()}


def test_construct_with_parameters():
    pruner = Pruner(**model_stage_channels(), target_sparsity=0.8, schedule="constant", frequency=10, m_by_n=(2, 4),
                    epochs=3, batch_size=32, learning_rate=0.01, seed=7, feature_key="pixels",
                    feature_shape=[784], train_limit=100)
    assert pruner.exec_properties == {
        "target_sparsity": 0.8, "schedule": "constant", "frequency": 10, "m_by_n": "[2, 4]",
        "epochs": 3, "batch_size": 32, "learning_rate": 0.01, "seed": 7, "exclude_layers": "[]", "strict": "false", "layer_sparsity": "",
        **encoded_data(feature_key="pixels", feature_shape="[784]", train_limit=100), **encoded_training()}


def test_feature_shape_as_a_tuple():
    """The data kwargs' README documents feature_shape as a tuple, (28, 28, 1); m_by_n and targets
    accept tuples too."""
    pruner = Pruner(**model_stage_channels(), feature_shape=(28, 28, 1))
    assert pruner.exec_properties["feature_shape"] == "[28, 28, 1]"


@pytest.mark.parametrize("params, message", [
    ({"target_sparsity": 1.5}, "prune.target_sparsity: 1.5 is greater than or equal to the maximum of 1"),
    ({"target_sparsity": 0}, "prune.target_sparsity: 0 is less than or equal to the minimum of 0"),
    ({"schedule": "cubic"}, "prune.schedule: 'cubic' is not one of ['constant', 'polynomial']"),
    ({"frequency": 0}, "prune.frequency: 0 is less than the minimum of 1"),
    ({"m_by_n": (4, 2)}, "prune.m_by_n: [4, 2] must be [M, N] with 0 < M < N (M zeros in every N weights)"),
    ({"m_by_n": (1, 2, 4)}, "prune.m_by_n: [1, 2, 4] is too long"),
    ({"epochs": 0}, "prune.epochs: 0 is less than the minimum of 1"),
    ({"learning_rate": 0.0}, "prune.learning_rate: 0.0 is less than or equal to the minimum of 0"),
    ({"eval_limit": -1}, "data.eval_limit: -1 is less than the minimum of 0"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(Pruner, **model_stage_channels(), **params) == message
