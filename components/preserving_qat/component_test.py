"""PreservingQAT component: construction, encoded exec_properties, output type, parameters checked by
the config schema."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import PreservingQAT, keys
from collabopt.components.preserving_qat import executor
from collabopt.tests.helpers import config_error, encoded_data, encoded_training, model_stage_channels, output_types


def test_construct_with_defaults():
    qat = PreservingQAT(**model_stage_channels())
    assert output_types(qat) == {keys.QAT_MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert set(qat.inputs) == {keys.MODEL_KEY, keys.EXAMPLES_KEY}
    assert qat.EXECUTOR_SPEC.executor_class is executor.Executor
    assert qat.exec_properties == {
        "scheme": "auto", "shared_centroids": "true",
        "epochs": 1, "batch_size": 64, "learning_rate": 1e-5, "seed": 0, "exclude_layers": "[]", "strict": "false", **encoded_data(), **encoded_training()}


def test_construct_with_parameters():
    qat = PreservingQAT(**model_stage_channels(), scheme="pcqat", shared_centroids=False, learning_rate=1e-4,
                        seed=3, eval_split="test")
    assert qat.exec_properties == {
        "scheme": "pcqat", "shared_centroids": "false",
        "epochs": 1, "batch_size": 64, "learning_rate": 1e-4, "seed": 3, "exclude_layers": "[]", "strict": "false", **encoded_data(eval_split="test"), **encoded_training()}


@pytest.mark.parametrize("params, message", [
    ({"scheme": "bogus"}, "qat.scheme: 'bogus' is not one of ['auto', 'qat', 'pqat', 'cqat', 'pcqat']"),
    ({"shared_centroids": 1}, "qat.shared_centroids: 1 is not of type 'boolean'"),
    ({"epochs": 1.5}, "qat.epochs: 1.5 is not of type 'integer'"),
    ({"train_split": ""}, "data.train_split: '' should be non-empty"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(PreservingQAT, **model_stage_channels(), **params) == message
