"""Up-front checks of what a stage reads, so that a bad model or bad data is a named error before any
fine-tuning, conversion or evaluation starts: not a raw TF error, a chance-level accuracy, or a
"not INT8" three stages later. Each stage function in core/stages.py calls `stage_inputs` first.

The model is checked from its files (nothing is loaded); the data in one streaming pass, batch by
batch, over exactly the records the stage reads."""
import os

import numpy as np

from collabopt.core.data import examples_io, inputs
from collabopt.core.data.user_module import UserModuleError
from collabopt.core.model import keras_io
from collabopt.core.tfenv import tf


def _per_example(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def model(model_path, feature_shape):
    """The number of classes (None if unknown) of the tf_keras model at `model_path`: a whole tf_keras
    SavedModel (keras_io.serving_signature) with one input taking `feature_shape` examples (any inputs
    with feature_shape None: a module_file's input_fn feeds them) and one output. ModelError otherwise."""
    path = str(model_path)
    if os.path.isfile(path):  # a .h5/.keras file: only loading it tells its shapes
        m = keras_io.load_model(path, check=False)
        inputs, outputs = ({t.name: tuple(t.shape) for t in ts} for ts in (m.inputs, m.outputs))
    else:
        inputs, outputs = keras_io.serving_signature(path)
        name, graph = keras_io.saved_model_class(path)
        if not graph:
            raise keras_io.ModelError(f"{path!r}: {keras_io.subclassed_error(name)}")
    if feature_shape is None:
        inputs = {}
    want = tuple(feature_shape or ())
    if inputs and len(inputs) != 1:
        raise keras_io.ModelError(f"{path!r}: the model takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); "
                                  "collabopt feeds it one, the data.feature_key feature (a training.module_file "
                                  "input_fn can feed several)")
    (name, shape), = inputs.items() or [(None, None)]
    if shape is not None and (len(shape) != len(want) + 1 or any(d not in (None, w) for d, w in zip(shape[1:], want))):
        raise keras_io.ModelError(f"{path!r}: the model's input {name!r} takes examples of shape "
                                  f"{_per_example(shape[1:])}, but data.feature_shape is {list(want)}")
    if len(outputs) != 1:
        raise keras_io.ModelError(f"{path!r}: the model has {len(outputs)} outputs ({', '.join(sorted(outputs))}); "
                                  "collabopt trains and evaluates one, the class logits")
    (shape,) = outputs.values()
    return shape[-1] if shape else None


def examples(data_spec, split, limit=None, num_classes=None):
    """Stream `limit` records (None or 0: all) of `split`: every file readable, every feature finite,
    every label in [0, num_classes). ExamplesError naming the split, file and record otherwise."""
    file, offset = None, 0
    for path, x, y in examples_io.stream_examples(data_spec.examples_uri, split, data_spec.feature_key,
                                           data_spec.label_key, tuple(data_spec.feature_shape), limit=limit or None):
        file, offset = path, (offset if path == file else 0)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            raise examples_io.ExamplesError(
                f"Examples split {split!r}: {path}: record {offset + int(np.argmin(finite))}: feature "
                f"{data_spec.feature_key!r} holds NaN or infinite values ({int(np.sum(~finite))} of the "
                f"{len(x)} records of its batch do)")
        bad = (y < 0) | (y >= num_classes) if num_classes else y < 0
        if bad.any():
            i = int(np.argmax(bad))
            classes = f"the model's {num_classes} classes (0-{num_classes - 1})" if num_classes else "0 and up"
            raise examples_io.ExamplesError(
                f"Examples split {split!r}: {path}: record {offset + i}: label {data_spec.label_key!r} is "
                f"{int(y[i])}, outside {classes} ({int(np.sum(bad))} of the {len(y)} labels of its batch are)")
        offset += len(y)


def model_inputs(model_path):
    """{input name: (per-example shape, dtype name)} of the tf_keras model at `model_path`."""
    path = str(model_path)
    if os.path.isfile(path):
        m = keras_io.load_model(path, check=False)
        return {name: (tuple(t.shape[1:]), t.dtype.name) for name, t in zip(m.input_names, m.inputs)}
    shapes, _ = keras_io.serving_signature(path)
    dtypes = keras_io.serving_signature(path, dtypes=True)
    return {name: (tuple(shape[1:]) if shape else None, dtypes[name]) for name, shape in shapes.items()}


def _fits(shape, want):
    """Does a feature of per-example `shape` fit a model input of per-example `want` (None: any size)?
    One dimension less where the input's last is 1 fits too: Keras adds it."""
    if want is None:
        return True
    if len(shape) + 1 == len(want) and want[-1] == 1:
        want = want[:-1]
    return len(shape) == len(want) and all(w in (None, d) for d, w in zip(shape, want))


def _kind(x):
    return "strings" if x.dtype.kind in "OSU" else f"{x.dtype} values"


def _module_batch(where, offset, features, targets, takes, num_classes):
    """Check one (features, targets) batch of a module's input_fn; returns its number of examples."""
    targets = np.asarray(targets)
    if targets.ndim == 0:
        raise UserModuleError(f"{where}: its targets are a scalar, not a batch")
    n = len(targets)
    if takes is not None and not isinstance(features, dict) and len(takes) != 1:
        raise UserModuleError(f"{where}: gives one feature array, but the model takes {len(takes)} inputs "
                              f"({', '.join(sorted(takes))}): give a dict keyed by their names")
    if takes is not None and isinstance(features, dict) and set(takes) - set(features):
        raise UserModuleError(f"{where}: no feature for the model's input(s) {', '.join(sorted(set(takes) - set(features)))}"
                              f" (features: {', '.join(sorted(features)) or 'none'})")
    arrays = features if isinstance(features, dict) else {next(iter(takes or {"features": 0})): features}
    for name, x in arrays.items():
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise UserModuleError(f"{where}: feature {name!r} holds {_kind(x)}, not numbers")
        if x.ndim == 0 or len(x) != n:
            raise UserModuleError(f"{where}: feature {name!r} has {len(x) if x.ndim else 'no'} examples in a batch "
                                  f"whose targets have {n}")
        shape, dtype = (takes or {}).get(name, (None, None))
        if not _fits(x.shape[1:], shape):
            raise UserModuleError(f"{where}: feature {name!r} has examples of shape {_per_example(x.shape[1:])}, but "
                                  f"the model's input {name!r} takes {_per_example(shape)}")
        if dtype and tf.as_dtype(dtype).is_integer and x.dtype.kind == "f":
            raise UserModuleError(f"{where}: feature {name!r} holds {x.dtype} values, but the model's input "
                                  f"{name!r} takes {dtype}")
        finite = np.isfinite(x.reshape(n, -1)).all(axis=1) if x.dtype.kind == "f" else np.ones(n, bool)
        if not finite.all():
            raise UserModuleError(f"{where}: example {offset + int(np.argmin(finite))}: feature {name!r} holds NaN or "
                                  f"infinite values ({int(np.sum(~finite))} of the {n} examples of its batch do)")
    if targets.dtype.kind not in "fiub":
        raise UserModuleError(f"{where}: its targets hold {_kind(targets)}, not numbers")
    y = targets.reshape(n, -1)
    finite = np.isfinite(y).all(axis=1)
    if not finite.all():
        raise UserModuleError(f"{where}: example {offset + int(np.argmin(finite))}: its targets hold NaN or infinite "
                              f"values ({int(np.sum(~finite))} of the {n} examples of its batch do)")
    if num_classes:
        y = targets.reshape(-1) if y.shape[1] == 1 else None
        if y is None:
            raise UserModuleError(f"{where}: its labels have shape {_per_example(targets.shape[1:])} per example; the "
                                  f"model's {num_classes} classes need one class index each")
        bad = (y < 0) | (y >= num_classes) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserModuleError(f"{where}: example {offset + i}: label {y[i]:g} is not one of the model's "
                                  f"{num_classes} classes (0-{num_classes - 1}) ({int(np.sum(bad))} of the {n} labels "
                                  "of its batch are not)")
    return n


def module_data(data_spec, split, limit=0, takes=None, num_classes=None, training=False):
    """Stream what the module file's input_fn gives for `split` as a stage reads it (at most `limit`
    examples; 0: one epoch): (features, targets) batches with a feature for every input of the model
    (`takes`: model_inputs(); None: unknown) in its shape and a numeric dtype, every value
    finite, the targets class indices in [0, num_classes) (if given), and at least one example.
    UserModuleError naming the file, input_fn and the split otherwise."""
    where = f"{data_spec.module_file!r}: input_fn(...) for split {split!r}"
    batches, seen = data_spec.stream(split, limit, training=training).as_numpy_iterator(), 0
    while True:
        try:
            batch = next(batches, None)
        except tf.errors.OpError as e:
            raise UserModuleError(f"{where}: its dataset failed after {seen} examples: "
                                  f"{examples_io._tf_words(e).splitlines()[0] if examples_io._tf_words(e) else type(e).__name__}") from e
        if batch is None:
            break
        seen += _module_batch(where, seen, *batch, takes, num_classes)
    if not seen:
        raise UserModuleError(f"{where}: its dataset is empty (the split holds "
                              f"{examples_io.count_records(examples_io.split_files(data_spec.examples_uri, split), 0, split)} records)")


def stage_inputs(data_spec, model_path=None, *, num_classes=None, train=True, evaluation=True, classes=True):
    """Check what a stage reads before it starts: the model at `model_path` (if any; its classes bound
    the labels, else `num_classes` does), then the train split (`train`: True for what
    data_spec.train() reads, a number n for data_spec.train(limit=n), False for nothing) and the eval
    split (`evaluation`: True for data_spec.eval(), "all" for every record, False for nothing).
    `classes`: the labels are class indices (core.metrics.class_labels); else only >= 0 is checked.
    A module_file's input_fn is checked as the Examples are (module_data). Returns the number of classes.
    """
    if model_path:
        num_classes = model(model_path, None if data_spec.module_file else data_spec.feature_shape) or num_classes
        num_classes = 2 if num_classes == 1 else num_classes  # one output: a binary classifier's
    if not classes or data_spec.target == inputs.FEATURES:
        num_classes = None  # e.g. the output is the input again, not classes
    if data_spec.module_file:
        takes = model_inputs(model_path) if model_path else None
        if train is not False:
            module_data(data_spec, data_spec.train_split, data_spec.train_cap(0 if train is True else train), takes,
                        num_classes, training=True)
        if evaluation:
            module_data(data_spec, data_spec.eval_split, 0 if evaluation == "all" else data_spec.eval_limit, takes,
                        num_classes)
        return num_classes
    if train is not False:
        examples(data_spec, data_spec.train_split, data_spec.train_cap(0 if train is True else train), num_classes)
    if evaluation:
        examples(data_spec, data_spec.eval_split, None if evaluation == "all" else data_spec.eval_limit, num_classes)
    return num_classes
