"""Load and save the tf_keras SavedModels that cross component boundaries."""
import os

from collabopt.core.tfenv import keras, tf

# A TFX Trainer writes its model under this folder of the Model artifact.
from collabopt.core.artifact_files import MODEL_DIR as SERVING_DIR  # noqa: E402


class ModelError(ValueError):
    """The model cannot be used by collabopt; the message says why."""


def saved_model_dir(path):
    """The SavedModel folder under `path`: `path` itself or a Trainer's `Format-Serving/`."""
    path = str(path)
    if not os.path.exists(path):
        raise ModelError(f"model path {path!r} does not exist")
    for cand in (path, os.path.join(path, SERVING_DIR)):
        if os.path.isfile(os.path.join(cand, "saved_model.pb")):
            return cand
    raise ModelError(
        f"{path!r} is not a SavedModel: no saved_model.pb in it or in its {SERVING_DIR}/ folder")


def check_supported(model):
    """Only graph models whose layers are built-in tf_keras layers can be optimized by TFMOT."""
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise ModelError(
            f"only Sequential/Functional tf_keras models are supported; got a subclassed model "
            f"({type(model).__name__}). Rebuild it with the Functional API.")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            check_supported(layer)
            continue
        mod = type(layer).__module__
        if not mod.startswith("tf_keras.") or "saved_model" in mod or "Revived" in type(layer).__name__:
            raise ModelError(
                f"only Sequential/Functional models of built-in tf_keras layers are supported; "
                f"layer {layer.name!r} is a custom layer ({type(layer).__name__}) that TFMOT cannot "
                f"prune, cluster or quantize")
    return model


def load_model(path, custom_objects=None, check=True):
    """Load a tf_keras SavedModel (or .h5/.keras file) without compiling it."""
    path = str(path)
    if os.path.isfile(path) and path.endswith((".h5", ".keras")):
        src = path
    else:
        src = saved_model_dir(path)
    try:
        with keras.utils.custom_object_scope(custom_objects or {}):
            model = keras.models.load_model(src, compile=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise ModelError(f"cannot load a tf_keras model from {src!r}: {e}") from e
    return check_supported(model) if check else model


def save_model(model, path):
    """Save as a tf_keras SavedModel (what TFX Pusher and our components read)."""
    os.makedirs(path, exist_ok=True)
    model.save(path, include_optimizer=False, save_format="tf")
    return path


__all__ = ["ModelError", "SERVING_DIR", "saved_model_dir", "check_supported", "load_model",
           "save_model", "tf"]
