"""PreservingQAT executor with hand-built artifacts: a sparse model (as a Pruner leaves it) in, a QAT
SavedModel whose INT8 conversion keeps the zeros out (scheme picked: PQAT); bad parameters fail
before any work."""
import os

import numpy as np
import pytest

from collabopt.components import PreservingQAT, keys
from collabopt.components.preserving_qat.executor import Executor
from collabopt.core.tflite import flatbuffer
from collabopt.core.model import keras_io
from collabopt.core import stages
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, data_spec, kernel_history, read_json, run_model_stage, saved_kernel


def test_auto_scheme_keeps_the_zeros_of_a_pruned_model(tmp_path, sparse_model_uri, examples_uri):
    out = run_model_stage(Executor(), PreservingQAT, sparse_model_uri, examples_uri, tmp_path)
    assert prop(out, "scheme") == "pqat"  # 'auto' on a sparse, unclustered model
    assert prop(out, "technique") == "pqat"
    assert stages.is_qat_saved_model(keras_io.saved_model_dir(out.uri))  # fake-quant ops for the converter
    accuracy = prop(out, "accuracy")
    assert prop(out, "fake_int8_accuracy") == accuracy and 0.0 <= accuracy <= 1.0
    assert prop(out, "num_params") == keras_io.load_model(sparse_model_uri).count_params()
    stats = read_json(os.path.join(out.uri, "stats.json"))
    assert stats["promises"] == {"target_sparsity": 0.5} and stats["scheme"] == "pqat"
    # The trace holds the input's kernel only: the fake-quant kernel is not the deployed one.
    layer, history = kernel_history(out.uri)
    assert layer == "pw_1" and list(history) == ["baseline"]
    np.testing.assert_array_equal(history["baseline"], saved_kernel(sparse_model_uri, layer))

    # Saved without per-layer traces: Keras rebuilds it in collabopt's quantize scope, and it computes
    # what its serving signature (the converter's input) computes.
    from collabopt.core.techniques import layer_support
    from collabopt.core.tfenv import keras, tf
    saved = keras_io.saved_model_dir(out.uri)
    with layer_support.quantize_scope():
        rebuilt = keras.models.load_model(saved, compile=False)
    x = tf.random.stateless_uniform((4, *rebuilt.input_shape[1:]), seed=(1, 2))
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    (served,) = serve(**{name: x}).values()
    np.testing.assert_allclose(rebuilt(x, training=False).numpy(), served.numpy(), atol=1e-6)

    # What the QAT model is for: an INT8 flatbuffer with the QAT ranges and the zeros kept.
    tflite = tmp_path / "tflite"
    conv = stages.to_tflite(out.uri, data_spec(examples_uri), str(tflite), representative_samples=10, evaluate=False)
    assert conv["mode"] == "qat" and conv["preservation_failures"] == []
    layers = {l["layer"]: l for l in flatbuffer.layer_stats((tflite / "model.tflite").read_bytes())}
    for name in ("conv_1", "pw_1", "logits"):  # the pruned kernels
        assert layers[name]["dtype"] == "int8" and layers[name]["sparsity"] >= 0.49, layers[name]


@pytest.mark.parametrize("bad, message", [
    ({"scheme": "bogus"}, "qat.scheme: 'bogus' is not one of ['auto', 'qat', 'pqat', 'cqat', 'pcqat']"),
    ({"shared_centroids": "1"}, "qat.shared_centroids: 1 is not of type 'boolean'"),
    ({"learning_rate": -1.0}, "qat.learning_rate: -1.0 is less than or equal to the minimum of 0"),
])
def test_bad_exec_property_fails_before_training(tmp_path, sparse_model_uri, examples_uri, bad, message):
    with pytest.raises(ConfigError) as e:
        run_model_stage(Executor(), PreservingQAT, sparse_model_uri, examples_uri, tmp_path, **bad)
    assert str(e.value) == message
    assert os.listdir(tmp_path / keys.QAT_MODEL_KEY) == []
