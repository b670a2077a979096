"""Executors with hand-built artifacts (as TFX's own executor tests do): decode, run, record."""
import json
import os

from tfx.types import artifact_utils, standard_artifacts

from collabopt.components import NPUModel, TFLiteModel, common
from collabopt.components.npu_compiler.executor import Executor as NPUExecutor
from collabopt.components.tflite_converter.executor import Executor as ConverterExecutor
from collabopt.core import keras_io, train
from collabopt.tests.helpers import artifact


def test_converter_then_npu_compiler(tmp_path, examples_uri):
    model = train.ds_cnn(width=16, blocks=1)
    keras_io.save_model(model, str(tmp_path / "model" / keras_io.SERVING_DIR))  # a Trainer's layout
    examples = artifact(standard_artifacts.Examples, examples_uri,
                         split_names=artifact_utils.encode_split_names(["train", "eval"]))
    tflite = artifact(TFLiteModel, tmp_path / "tflite")
    props = {"representative_samples": 50, **common.data_params(train_limit=100, eval_limit=100)}
    ConverterExecutor().Do({"model": [artifact(standard_artifacts.Model, tmp_path / "model")],
                            "examples": [examples]}, {"tflite_model": [tflite]}, props)
    size = os.path.getsize(tmp_path / "tflite" / "model.tflite")
    assert tflite.get_int_custom_property("tflite_bytes") == size
    assert 0 < tflite.get_int_custom_property("gzip_bytes") < size
    assert tflite.get_string_custom_property("mode") == "ptq"
    assert tflite.get_int_custom_property("preservation_ok") == 1  # a user's model promises nothing
    assert 0.0 <= tflite.get_float_custom_property("int8_accuracy") <= 1.0
    with open(tmp_path / "tflite" / "stats.json") as f:
        assert [l["layer"] for l in json.load(f)["layers"]] == ["conv_1", "dw_1", "pw_1", "logits"]

    npu = artifact(NPUModel, tmp_path / "npu")
    NPUExecutor().Do({"tflite_model": [tflite]}, {"npu_model": [npu]},
                     {"targets": json.dumps(["ethos-u55-128", "ethos-u65-256"]),
                      "system_config": "", "memory_mode": ""})
    assert npu.get_string_custom_property("accelerator_config") == "ethos-u55-128"
    u55 = npu.get_int_custom_property("ethos-u55-128.npu_cycles")
    u65 = npu.get_int_custom_property("ethos-u65-256.npu_cycles")
    assert u55 == npu.get_int_custom_property("npu_cycles") > 0 and u65 > 0
    assert u55 != u65  # two real compilations, not one number copied
    assert os.path.isfile(tmp_path / "npu" / "ethos-u65-256" / "model_vela.tflite")
