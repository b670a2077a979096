"""FashionMnistExampleGen component: construction, encoded exec_properties, output type, parameters
checked by the config schema."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import FashionMnistExampleGen, keys
from collabopt.components.examples_gen import executor
from collabopt.core.data.examples_io import FASHION_MNIST_DIR
from collabopt.tests.helpers import config_error, output_types


def test_construct():
    gen = FashionMnistExampleGen(data_dir="/data/fm", train_limit=600, eval_limit=200, seed=4)
    assert output_types(gen) == {keys.EXAMPLES_KEY: standard_artifacts.Examples.TYPE_NAME}
    assert gen.inputs == {}
    assert gen.EXECUTOR_SPEC.executor_class is executor.Executor
    assert gen.exec_properties == {"data_dir": "/data/fm", "seed": 4, "train_limit": 600, "eval_limit": 200}
    assert FashionMnistExampleGen().exec_properties == {
        "data_dir": FASHION_MNIST_DIR, "seed": 0, "train_limit": 0, "eval_limit": 0}


@pytest.mark.parametrize("params, message", [
    ({"train_limit": -1}, "data.train_limit: -1 is less than the minimum of 0"),
    ({"eval_limit": 1.5}, "data.eval_limit: 1.5 is not of type 'integer'"),
    ({"seed": None}, "examples.seed: None is not of type 'integer'"),
    ({"data_dir": 3}, "examples.data_dir: 3 is not of type 'string', 'null'"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(FashionMnistExampleGen, **params) == message
