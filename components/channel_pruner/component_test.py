"""ChannelPruner component: construction, encoded exec_properties, output type, parameters checked by the
config schema; its executor on tiny data: a thinner model with Vela's cycles before and after."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import ChannelPruner, keys
from collabopt.components.channel_pruner import executor
from collabopt.core.model import keras_io
from collabopt.tests.helpers import (config_error, encoded_data, encoded_training, model_stage_channels, output_types,
                                     prop, run_model_stage)


def test_construct_with_defaults():
    channels = model_stage_channels()
    thin = ChannelPruner(**channels)
    assert output_types(thin) == {keys.THINNED_MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert thin.EXECUTOR_SPEC.executor_class is executor.Executor
    assert thin.exec_properties == {
        "keep_ratio": 0.5, "target_cycles": "", "npu_target": "ethos-u55-128", "score": "l1", "min_keep": 0.25,
        "exclude_layers": "[]", "strict": "false", "distill": 0.0, "distill_temperature": 1.0, "epochs": 2, "batch_size": 64, "learning_rate": 5e-4, "seed": 0,
        **encoded_data(), **encoded_training()}


@pytest.mark.parametrize("params, message", [
    ({"keep_ratio": 1.5}, "thin.keep_ratio: 1.5 is greater than the maximum of 1"),
    ({"target_cycles": 0}, "thin.target_cycles: 0 is less than or equal to the minimum of 0"),
    ({"score": "l2"}, "thin.score: 'l2' is not one of ['l1', 'bn']"),
    ({"distill": 1.5}, "thin.distill: 1.5 is greater than the maximum of 1"),
    ({"distill": "half"}, "thin.distill: 'half' is not of type 'number'"),
    ({"distill_temperature": 0}, "thin.distill_temperature: 0 is less than or equal to the minimum of 0"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(ChannelPruner, **model_stage_channels(), **params) == message


def test_executor_thins_and_records_vela_cycles(tmp_path, model_uri, examples_uri):
    out = run_model_stage(executor.Executor(), ChannelPruner, model_uri, examples_uri, tmp_path,
                          {"keep_ratio": 0.5})
    assert prop(out, "technique") == "thin"
    assert prop(out, "vela_cycles_after") < prop(out, "vela_cycles_before")
    assert prop(out, "num_params") < keras_io.load_model(model_uri).count_params()
