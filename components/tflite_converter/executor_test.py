"""TFLiteConverter executor with hand-built artifacts: a user's SavedModel (PTQ) or a QAT SavedModel
in, a fully INT8 model.tflite, its analysis (stats.json), kernel trace and MLMD properties out."""
import gzip
import os

import numpy as np
import pytest

from collabopt.components import TFLiteConverter, keys
from collabopt.components.tflite_converter.executor import Executor
from collabopt.core.tflite import flatbuffer
from collabopt.core.data import examples_io
from collabopt.core.model import baseline, keras_io
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import (prop, TINY_DATA, examples_artifact, failed_artifact, failure_of, kernel_history,
                                     model_stage_channels, model_stage_inputs, read_json, run_executor, saved_kernel)


def _convert(tmp_path, model_uri, examples_uri, **overrides):
    converter = TFLiteConverter(**model_stage_channels(), representative_samples=50, **TINY_DATA)
    return run_executor(Executor(), converter, model_stage_inputs(model_uri, examples_uri), tmp_path,
                        **overrides)[keys.TFLITE_MODEL_KEY]


def test_ptq_of_a_users_model(tmp_path, model_uri, examples_uri):
    tflite = _convert(tmp_path, model_uri, examples_uri)
    tflite_bytes = open(os.path.join(tflite.uri, "model.tflite"), "rb").read()
    assert prop(tflite, "tflite_bytes") == len(tflite_bytes)
    gzip_bytes = len(gzip.compress(tflite_bytes, compresslevel=9))
    assert prop(tflite, "gzip_bytes") == gzip_bytes < len(tflite_bytes)
    assert prop(tflite, "mode") == "ptq"
    assert prop(tflite, "preservation_ok") == 1  # a user's model promises nothing
    assert prop(tflite, "preservation_failures") == ""

    # Fully INT8 (what Vela needs): int8 kernels, int8 input and output.
    interp = flatbuffer.interpreter(tflite_bytes)
    assert [d["dtype"] for d in interp.get_input_details() + interp.get_output_details()] == [np.int8, np.int8]
    layers = flatbuffer.layer_stats(tflite_bytes)
    assert [(l["layer"], l["dtype"]) for l in layers] == [(n, "int8") for n in ("conv_1", "dw_1", "pw_1", "logits")]
    stats = read_json(os.path.join(tflite.uri, "stats.json"))
    assert stats["layers"] == layers and stats["promises"] == {}
    assert prop(tflite, "sparsity") == pytest.approx(stats["sparsity"])
    assert prop(tflite, "max_unique_per_tensor") == max(
        l["unique_per_tensor"] for l in layers if l["op"] != "DEPTHWISE_CONV_2D")

    # INT8 accuracy on the eval split (eval_limit), with the interpreter, as a device would run it.
    x, y = examples_io.read_examples(examples_artifact(examples_uri).uri, "eval", limit=TINY_DATA["eval_limit"])
    assert prop(tflite, "int8_accuracy") == pytest.approx(flatbuffer.int8_accuracy(tflite_bytes, x, y))

    # The density figure's trace: the user's kernel as baseline, then the int8 codes stored.
    layer, history = kernel_history(tflite.uri)
    assert layer == "pw_1" and list(history) == ["baseline", "int8"]
    np.testing.assert_array_equal(history["baseline"], saved_kernel(model_uri, layer))
    np.testing.assert_array_equal(history["int8"], flatbuffer.kernel_codes(tflite_bytes, layer))
    assert history["int8"].dtype == np.int8


def test_qat_model_converts_with_its_own_ranges(tmp_path, examples_uri):
    import tensorflow_model_optimization as tfmot
    qat_uri = str(tmp_path / "qat_model")
    keras_io.save_model(tfmot.quantization.keras.quantize_model(baseline.ds_cnn(width=16, blocks=1)),
                        os.path.join(qat_uri, keras_io.SERVING_DIR))
    tflite = _convert(tmp_path, qat_uri, examples_uri)
    assert prop(tflite, "mode") == "qat"
    layers = flatbuffer.layer_stats(open(os.path.join(tflite.uri, "model.tflite"), "rb").read())
    assert [(l["layer"], l["dtype"]) for l in layers] == [(n, "int8") for n in ("conv_1", "dw_1", "pw_1", "logits")]


def test_bad_exec_property_fails_before_converting(tmp_path, model_uri, examples_uri):
    with pytest.raises(ConfigError) as e:
        _convert(tmp_path, model_uri, examples_uri, representative_samples=0)
    assert str(e.value) == "convert.representative_samples: 0 is less than the minimum of 1"
    assert os.listdir(tmp_path / keys.TFLITE_MODEL_KEY) == []


def test_a_model_of_a_failed_path_is_passed_on_without_work(tmp_path, examples_uri):
    """Its input marked failed (its path's Pruner failed), the converter reads nothing (the model folder
    does not exist) and marks its own output failed with the same reason."""
    from tfx.types import standard_artifacts
    converter = TFLiteConverter(**model_stage_channels(), **TINY_DATA)
    inputs = {keys.MODEL_KEY: failed_artifact(standard_artifacts.Model, tmp_path / "never_written", "Pruner: why"),
              keys.EXAMPLES_KEY: examples_artifact(examples_uri)}
    tflite = run_executor(Executor(), converter, inputs, tmp_path)[keys.TFLITE_MODEL_KEY]
    assert failure_of(tflite) == (1, "Pruner: why")
    assert os.listdir(tflite.uri) == [] and not os.path.exists(tmp_path / "never_written")
