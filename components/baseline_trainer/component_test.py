"""BaselineTrainer component: construction, encoded exec_properties, output type, parameters checked
by the config schema."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import BaselineTrainer, keys
from collabopt.components.baseline_trainer import executor
from collabopt.tests.helpers import channel, config_error, encoded_data, encoded_training, output_types


def test_construct():
    examples = channel(standard_artifacts.Examples)
    trainer = BaselineTrainer(examples=examples, width=16, blocks=1, epochs=1, learning_rate=0.01, train_limit=100)
    assert output_types(trainer) == {keys.MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert trainer.inputs == {keys.EXAMPLES_KEY: examples}
    assert trainer.EXECUTOR_SPEC.executor_class is executor.Executor
    assert trainer.exec_properties == {
        "width": 16, "blocks": 1, "num_classes": 10,
        "epochs": 1, "batch_size": 64, "learning_rate": 0.01, "seed": 0, **encoded_data(train_limit=100), **encoded_training()}
    defaults = BaselineTrainer(examples=examples).exec_properties
    assert {k: defaults[k] for k in ("width", "blocks", "epochs", "learning_rate")} == {
        "width": 64, "blocks": 4, "epochs": 3, "learning_rate": 1e-3}


@pytest.mark.parametrize("params, message", [
    ({"width": 0}, "baseline.width: 0 is less than the minimum of 1"),
    ({"blocks": -1}, "baseline.blocks: -1 is less than the minimum of 1"),
    ({"num_classes": 1}, "baseline.num_classes: 1 is less than the minimum of 2"),
    ({"learning_rate": -0.1}, "baseline.learning_rate: -0.1 is less than or equal to the minimum of 0"),
    ({"seed": "0"}, "baseline.seed: '0' is not of type 'integer'"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(BaselineTrainer, examples=channel(standard_artifacts.Examples), **params) == message
