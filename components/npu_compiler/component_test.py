"""NPUCompiler component: construction, encoded exec_properties, output type, parameters checked by
the config schema."""
import pytest

from collabopt.components import NPUCompiler, NPUModel, TFLiteModel, keys
from collabopt.components.npu_compiler import executor
from collabopt.tests.helpers import channel, config_error, output_types


def test_construct():
    tflite = channel(TFLiteModel)
    npu = NPUCompiler(tflite_model=tflite, targets=("ethos-u55-128", "ethos-u65-256"),
                      system_config="Ethos_U55_Deep_Embedded", memory_mode="Sram_Only")
    assert output_types(npu) == {keys.NPU_MODEL_KEY: NPUModel.TYPE_NAME}
    assert NPUModel.TYPE_NAME == "collabopt.NPUModel"
    assert npu.inputs == {keys.TFLITE_MODEL_KEY: tflite}
    assert npu.EXECUTOR_SPEC.executor_class is executor.Executor
    assert npu.exec_properties == {"targets": '["ethos-u55-128", "ethos-u65-256"]',
                                   "system_config": "Ethos_U55_Deep_Embedded", "memory_mode": "Sram_Only"}


def test_defaults_and_one_target_as_a_string():
    assert NPUCompiler(tflite_model=channel(TFLiteModel)).exec_properties == {
        "targets": '["ethos-u55-128"]', "system_config": "", "memory_mode": ""}  # "": Vela's defaults
    assert NPUCompiler(tflite_model=channel(TFLiteModel), targets="ethos-u85-256").exec_properties["targets"] == \
        '["ethos-u85-256"]'


@pytest.mark.parametrize("params, message", [
    ({"targets": []}, "npu.targets: [] should be non-empty"),
    ({"targets": ["ethos-u55-128", "ethos-u55-128"]},
     "npu.targets: ['ethos-u55-128', 'ethos-u55-128'] has non-unique elements"),
    ({"targets": "ethos-u99-1"}, "npu.targets.0: 'ethos-u99-1' is not one of ['ethos-u55-32', 'ethos-u55-64', "
     "'ethos-u55-128', 'ethos-u55-256', 'ethos-u65-256', 'ethos-u65-512', 'ethos-u85-128', 'ethos-u85-256', "
     "'ethos-u85-512', 'ethos-u85-1024', 'ethos-u85-2048']"),
    ({"memory_mode": 3}, "npu.memory_mode: 3 is not of type 'string'"),
    ({"system_config": None}, "npu.system_config: None is not of type 'string'"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(NPUCompiler, tflite_model=channel(TFLiteModel), **params) == message
