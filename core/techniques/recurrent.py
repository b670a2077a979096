"""Recurrent layers (LSTM, GRU, SimpleRNN, also inside Bidirectional / RNN) rebuilt unrolled over the
model's fixed time dimension, before any technique runs and before conversion.

As saved (a while-loop over time), the TFLite converter refuses them ("TensorListReserve ...
element_shape to be static") and, at batch 1, its calibrator has segfaulted on a GRU. Unrolled (the
same weights, `unroll=True`), the loop becomes one FULLY_CONNECTED / elementwise block per time step:
the converter makes them full INT8 and Vela places them on the NPU. The rebuilt model's outputs are
checked against the original's (rewrite.assert_same_outputs)."""
import contextlib
import os
import tempfile

from collabopt.core.model import keras_io
from collabopt.core.techniques import rewrite
from collabopt.core.tfenv import keras

KINDS = ("LSTM", "GRU", "SimpleRNN", "RNN")  # tf_keras class names with an `unroll` option
_ROLLED = b'"unroll": false'  # in a tf_keras SavedModel's keras_metadata.pb: a loop left to unroll


def _unroll(config):
    """`config` (a layer's, nested for wrappers) with unroll=True on every recurrent layer in it;
    returns the names of those layers."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") in KINDS and not config.get("config", {}).get("unroll", True):
            config["config"]["unroll"] = True
            found.append(config["config"].get("name"))
        for v in config.values():
            found += _unroll(v)
    elif isinstance(config, list):
        for v in config:
            found += _unroll(v)
    return found


def unroll(model, check=True):
    """(model with every recurrent layer unrolled, {layer: what}, {layer: why not}); the model itself
    when it has none. A layer over an unknown time length cannot be unrolled (named in why-not)."""
    done, skipped, configs = {}, {}, []
    for layer in model.layers:
        cfg = {"class_name": type(layer).__name__, "config": layer.get_config()}
        names = _unroll(cfg)
        if not names:
            continue
        steps = layer.input_shape[1] if isinstance(layer.input_shape, tuple) else None
        if steps is None:
            skipped[layer.name] = (f"{type(layer).__name__} over an unknown number of time steps cannot be "
                                   "unrolled: give the model input a fixed time length")
            continue
        done[layer.name] = f"{type(layer).__name__} unrolled over {steps} time steps"
        configs.append(layer.name)
    if not done:
        return model, done, skipped
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    config = model.get_config()
    for e in config["layers"]:
        if e["name"] in configs:
            _unroll(e)
    custom = {type(l).__name__: type(l) for l in model.layers}
    result = keras.Model.from_config(config, custom_objects=custom)
    for layer in result.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    if check:
        rewrite.assert_same_outputs(model, result)
    return result, done, skipped


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def unrolled_saved_model(saved_model_dir, log=None):
    """`saved_model_dir`, or a temporary SavedModel of its model unrolled when it has a recurrent loop
    (found in keras_metadata.pb without loading the model): what the converter reads."""
    meta = os.path.join(saved_model_dir, keras_io.KERAS_METADATA)
    if not os.path.exists(meta) or _ROLLED not in _read(meta):
        yield saved_model_dir
        return
    model, done, skipped = unroll(keras_io.load_model(saved_model_dir, check=False))
    for layer, what in {**done, **skipped}.items():
        if log:
            log.info("[rewrite] %s: %s", layer, what)
    if not done:
        yield saved_model_dir
        return
    with tempfile.TemporaryDirectory(prefix="collabopt-unrolled-") as tmp:
        yield keras_io.save_model(model, os.path.join(tmp, keras_io.SERVING_DIR))
