"""Up-front checks of what a stage reads, so that a bad model or bad data is a named error before any
fine-tuning, conversion or evaluation starts: not a raw TF error, a chance-level accuracy, or a
"not INT8" three stages later. Each stage function in core/stages.py calls `stage_inputs` first.

The model is checked from its files (nothing is loaded); the data in one streaming pass, batch by
batch, over exactly the records the stage reads."""
import os

import numpy as np

from collabopt.core.data import examples_io, inputs
from collabopt.core.model import keras_io


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


def stage_inputs(data_spec, model_path=None, *, num_classes=None, train=True, evaluation=True, classes=True):
    """Check what a stage reads before it starts: the model at `model_path` (if any; its classes bound
    the labels, else `num_classes` does), then the train split (`train`: True for what
    data_spec.train() reads, a number n for data_spec.train(limit=n), False for nothing) and the eval
    split (`evaluation`: True for data_spec.eval(), "all" for every record, False for nothing).
    `classes`: the labels are class indices (core.metrics.class_labels); else only >= 0 is checked.
    Returns the number of classes. A module_file's input_fn owns its records: they are not checked here.
    """
    if model_path:
        num_classes = model(model_path, None if data_spec.module_file else data_spec.feature_shape) or num_classes
        num_classes = 2 if num_classes == 1 else num_classes  # one output: a binary classifier's
    if not classes or data_spec.target == inputs.FEATURES:
        num_classes = None  # e.g. the output is the input again, not classes
    if data_spec.module_file:
        return num_classes
    if train is not False:
        examples(data_spec, data_spec.train_split, data_spec.train_cap(0 if train is True else train), num_classes)
    if evaluation:
        examples(data_spec, data_spec.eval_split, None if evaluation == "all" else data_spec.eval_limit, num_classes)
    return num_classes
