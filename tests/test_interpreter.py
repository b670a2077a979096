"""analyze.interpreter: the one place TFLite models are loaded (LiteRT's interpreter), silent."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import warnings

import numpy as np
import pytest

from collabopt.core.tflite import flatbuffer, convert
from collabopt.core.tfenv import keras, tf


@pytest.fixture(scope="module")
def int8_model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])
    x = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blob = convert.to_int8(m, convert.representative(x, 16))
    return blob, x, [str(w.message) for w in caught]


def _reference_predictions(blob, x):
    """Top-1 with TensorFlow's own (deprecated) tf.lite.Interpreter, the same way int8_predictions does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(model_content=blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
    it.allocate_tensors()
    scale, zero = inp["quantization"]
    it.set_tensor(inp["index"], np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8))
    it.invoke()
    return np.argmax(it.get_tensor(out["index"]), axis=-1)


def test_interpreter_is_silent_and_predicts_int8(int8_model, tmp_path):
    blob, x, _ = int8_model
    path = tmp_path / "m.tflite"
    path.write_bytes(blob)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        its = [flatbuffer.interpreter(blob), flatbuffer.interpreter(model_path=path),
               flatbuffer.interpreter(blob, preserve_all_tensors=True)]
        preds = flatbuffer.int8_predictions(blob, x)
        stats = flatbuffer.layer_stats(blob)
    assert [str(w.message) for w in caught] == []  # no "deprecated", no "experimental_preserve_all_tensors"
    assert all(it.get_input_details()[0]["dtype"] == np.int8 for it in its)
    assert preds.shape == (len(x),) and set(preds) <= set(range(5))
    np.testing.assert_array_equal(preds, _reference_predictions(blob, x))  # same kernels, same INT8 result
    np.testing.assert_array_equal(flatbuffer.int8_predictions(None, x, interp=its[1]), preds)
    assert [s["op"] for s in stats] == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]


def test_interpreter_needs_exactly_one_source(int8_model, tmp_path):
    with pytest.raises(ValueError, match="exactly one of model_content, model_path"):
        flatbuffer.interpreter()
    with pytest.raises(ValueError, match="exactly one of model_content, model_path"):
        flatbuffer.interpreter(int8_model[0], model_path=tmp_path / "m.tflite")


def test_int8_conversion_is_silent(int8_model):
    # Before: TF's "Statistics for quantized inputs were expected, but not specified" on every conversion.
    assert int8_model[2] == []
