"""Load and save the tf_keras SavedModels that cross component boundaries."""
import contextlib
import json
import os
import tempfile
import zipfile

from google.protobuf import message

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


KERAS_METADATA = "keras_metadata.pb"  # tf_keras writes it next to saved_model.pb; Keras 3 does not
TF_KERAS_HINT = "build and save it with tf_keras (import tf_keras as keras; model.save(path, save_format='tf'))"


def _shapes(tensors):
    return {name: None if t.tensor_shape.unknown_rank else tuple(d.size if d.size >= 0 else None
                                                                 for d in t.tensor_shape.dim)
            for name, t in tensors.items()}


def serving_signature(path, dtypes=False):
    """({input: shape}, {output: shape}) of the serving_default signature of the tf_keras SavedModel at
    `path` (None for an unknown dimension), read from its saved_model.pb without loading the model;
    with `dtypes`, {input: dtype name} instead.
    ModelError unless it is a whole tf_keras SavedModel: not a Keras 3 export or a plain
    tf.saved_model, variables/ present."""
    from tensorflow.core.protobuf import saved_model_pb2

    src = saved_model_dir(path)
    try:
        with tf.io.gfile.GFile(os.path.join(src, "saved_model.pb"), "rb") as f:
            graphs = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs
    except message.DecodeError as e:
        raise ModelError(f"{src!r}: saved_model.pb is not a SavedModel (corrupt or truncated)") from e
    signatures = {k: v for graph in graphs[:1] for k, v in graph.signature_def.items()}
    if not tf.io.gfile.exists(os.path.join(src, KERAS_METADATA)):
        what = ("a Keras 3 SavedModel (model.export())" if "serve" in signatures
                else "not a tf_keras SavedModel (saved with tf.saved_model.save?)")
        raise ModelError(f"{src!r} is {what}: it has no {KERAS_METADATA}; collabopt fine-tunes tf_keras models: "
                         f"{TF_KERAS_HINT}")
    if not (tf.io.gfile.exists(os.path.join(src, "variables", "variables.index"))
            and tf.io.gfile.glob(os.path.join(src, "variables", "variables.data-*"))):
        raise ModelError(f"{src!r}: the SavedModel's variables/ folder is missing or incomplete (no "
                         "variables.index or variables.data-*): copy the whole SavedModel folder")
    if "serving_default" not in signatures:
        raise ModelError(f"{src!r}: the SavedModel has no serving_default signature")
    sig = signatures["serving_default"]
    return (_shapes(sig.inputs), _shapes(sig.outputs)) if not dtypes else \
        {name: tf.dtypes.as_dtype(t.dtype).name for name, t in sig.inputs.items()}


def saved_model_class(path):
    """(class name, Sequential/Functional?) of the tf_keras SavedModel at `path`, from its keras_metadata.pb."""
    from tf_keras.protobuf import saved_metadata_pb2

    with tf.io.gfile.GFile(os.path.join(saved_model_dir(path), KERAS_METADATA), "rb") as f:
        nodes = saved_metadata_pb2.SavedMetadata.FromString(f.read()).nodes
    root = json.loads(next((n.metadata for n in nodes if n.node_path == "root"), "{}") or "{}")
    return root.get("class_name", "?"), bool(root.get("is_graph_network")) or root.get("class_name") == "Sequential"


def model_config(path):
    """The Keras config ({'layers': [...], ...}) of the tf_keras model at `path`, read from its files
    (keras_metadata.pb, a .keras zip's config.json, an .h5's model_config), nothing loaded; {} if none."""
    path = str(path)
    if os.path.isfile(path):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                root = json.loads(z.read("config.json")) if "config.json" in z.namelist() else {}
        else:
            import h5py
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            root = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else {}
        return root.get("config") or {}
    from tf_keras.protobuf import saved_metadata_pb2
    try:
        with tf.io.gfile.GFile(os.path.join(saved_model_dir(path), KERAS_METADATA), "rb") as f:
            nodes = saved_metadata_pb2.SavedMetadata.FromString(f.read()).nodes
    except (OSError, tf.errors.NotFoundError):
        return {}
    root = json.loads(next((n.metadata for n in nodes if n.node_path == "root"), "{}") or "{}")
    return root.get("config") or {}


def subclassed_error(class_name):
    return ModelError(f"only Sequential/Functional tf_keras models are supported; got a subclassed model "
                      f"({class_name}). Rebuild it with the Functional API.")


MODEL_FILES = (".keras", ".h5", ".hdf5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def keras3_version(path):
    """The Keras version that saved a .keras file, if it is Keras 3 (tf_keras cannot read those)."""
    try:
        with zipfile.ZipFile(path) as z:
            version = str(json.loads(z.read("metadata.json")).get("keras_version", ""))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return version if version.startswith("3") else None


def check_file(path):
    """A model file is a whole tf_keras model in the .keras or HDF5 format, told from its bytes without
    loading it: ModelError naming what it is otherwise (Keras 3, weights only, not a model)."""
    path = str(path)
    if not path.endswith(MODEL_FILES):
        raise ModelError(f"{path!r} is a file but not a model: give a SavedModel folder, a TFX Model artifact "
                         f"folder (Format-Serving/) or a {', '.join(MODEL_FILES)} file")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.endswith(".keras"):
        if keras3_version(path):
            raise ModelError(f"{path!r} was saved by Keras {keras3_version(path)}; collabopt fine-tunes tf_keras "
                             f"models: {TF_KERAS_HINT}")
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path!r} is not a .keras file (not a zip archive; corrupt or truncated?)")
        return
    if head != HDF5_MAGIC:
        raise ModelError(f"{path!r} is not an HDF5 file (corrupt or truncated?)")
    import h5py
    try:
        with h5py.File(path, "r") as f:
            whole = "model_config" in f.attrs
            version = f.attrs.get("keras_version", b"")
    except OSError as e:
        raise ModelError(f"{path!r} is not a readable HDF5 file (corrupt or truncated?): {e}") from e
    version = version.decode() if isinstance(version, bytes) else str(version)
    if version.startswith("3"):  # Keras 3's HDF5 config is not one tf_keras can deserialize
        raise ModelError(f"{path!r} was saved by Keras {version}; collabopt fine-tunes tf_keras models: {TF_KERAS_HINT}")
    if not whole:
        raise ModelError(f"{path!r} holds weights only (save_weights): save the whole model "
                         "(model.save(path)) so collabopt can rebuild it")


def check_supported(model):
    """Only graph models whose layers are built-in tf_keras layers can be optimized by TFMOT."""
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise subclassed_error(type(model).__name__)
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
    if os.path.isfile(path):
        check_file(path)
        src = path
    else:
        src = saved_model_dir(path)
    try:
        with keras.utils.custom_object_scope(custom_objects or {}):
            model = keras.models.load_model(src, compile=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise ModelError(f"cannot load a tf_keras model from {src!r}: {e}") from e
    return check_supported(model) if check else model


@contextlib.contextmanager
def saved_model(path):
    """The SavedModel folder of the model at `path` (what the TFLite converter and the serving signature
    read): its own, or for a .keras/.h5 file a temporary export that lives as long as the context."""
    if not os.path.isfile(str(path)):
        yield saved_model_dir(path)
        return
    with tempfile.TemporaryDirectory(prefix="collabopt-savedmodel-") as tmp:
        yield save_model(load_model(path, check=False), os.path.join(tmp, SERVING_DIR))


def save_model(model, path, traces=True):
    """Save as a tf_keras SavedModel (what TFX Pusher and our components read). `traces=False`: without
    each layer's traced call functions, for models of built-in layers that tf_keras rebuilds from their
    config: saving, converting and loading a QAT model take seconds instead of ~15 s each. The serving
    signature is saved either way (the converter, Beam evaluation and the checks read it); a QAT model
    saved so is loaded by Keras inside layer_support.quantize_scope() (TFMOT's plus the left-out config)."""
    os.makedirs(path, exist_ok=True)
    if traces:
        model.save(path, include_optimizer=False, save_format="tf")
    else:
        from tf_keras.src.saving.legacy import saving_utils  # the signature Keras itself would trace
        model.save(path, include_optimizer=False, save_format="tf", save_traces=False,
                   signatures=saving_utils.trace_model_call(model))
    return path


__all__ = ["ModelError", "SERVING_DIR", "saved_model_dir", "serving_signature", "saved_model_class", "subclassed_error",
           "keras3_version", "check_file", "check_supported", "saved_model", "load_model", "save_model", "tf"]
