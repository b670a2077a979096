"""The fine-tuning loop every stage shares: losses and metrics, epoch checkpoints, progress."""
import contextlib
import contextvars
import dataclasses
import logging
import math
import os
import time

import numpy as np

from collabopt.core.progress import duration
from collabopt.core.tfenv import keras, tf

log = logging.getLogger("collabopt")


class ProgressLog(keras.callbacks.Callback):
    """One log line per epoch with its time and what is left of the fit, so a pipeline's log shows
    where fine-tuning is (and where a fit resumed from its checkpoint)."""

    def __init__(self, stage):
        super().__init__()
        self.stage, self.epochs, self.first, self.started = stage, None, None, None

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs")

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first, self.started = epoch, time.monotonic()
            if epoch:
                log.info("[%s] resumed at epoch %d/%s from its checkpoint", self.stage, epoch + 1, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if isinstance(v, float))
        per_epoch = (time.monotonic() - self.started) / (epoch + 1 - self.first)
        left = (self.epochs or epoch + 1) - epoch - 1
        log.info("[%s] epoch %d/%s %s (%s per epoch%s)", self.stage, epoch + 1, self.epochs, parts,
                 duration(per_epoch), f", ~{duration(per_epoch * left)} left" if left else "")

    def on_train_end(self, logs=None):
        if self.first is None and self.epochs:
            log.info("[%s] all %d epochs restored from its checkpoint", self.stage, self.epochs)


def sample(x, y=None, n=8):
    """(features, targets) of the first `n` examples of arrays x, y or of the first batch of a
    tf.data.Dataset of (features, targets); features an array or a dict of arrays by input name."""
    if isinstance(x, tf.data.Dataset):
        features, targets = next(iter(x.take(1)))
    else:
        features, targets = x, y
    cut = (lambda v: np.asarray(v)[:n]) if n else np.asarray
    features = {k: cut(v) for k, v in features.items()} if isinstance(features, dict) else cut(features)
    return features, None if targets is None else cut(targets)


def outputs_probabilities(model, x):
    """Does the model end in a softmax (keras.applications' default, every MLPerf Tiny classifier)
    rather than in logits? Asked of the model's own outputs on a few samples, so any layer or TFMOT
    wrapper that applies the softmax counts."""
    features, _ = sample(x)
    if not isinstance(features, dict):
        features = features.astype(np.float32)
    out = np.asarray(model(features, training=False))
    return bool(out.shape[-1] > 1 and np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))


CROSS_ENTROPY = ("auto", "sparse_categorical_crossentropy", "binary_crossentropy")  # on integer labels
LOSSES = {"mse": "MeanSquaredError", "mae": "MeanAbsoluteError", "huber": "Huber"}


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """The config's `training` section: the fine-tuning loss and logged metrics, and the metric a leaf
    is evaluated and gated by (core.metrics). What the output is compared with (training.target) is
    the data's: inputs.DataSpec.target. `loss_fn(model)` / `metrics_fn()`: hooks (a module_file's)
    that override `loss` / `metrics`."""
    loss: str = "auto"
    metrics: tuple = None  # None: ['accuracy'] for a cross-entropy loss, none otherwise
    eval_metric: str = "accuracy"
    top_k: int = 5
    loss_fn: object = None
    metrics_fn: object = None


def reconstructs(x, y=None):
    """Is the target the input itself (training.target: features, an autoencoder)?"""
    features, targets = sample(x, y)
    return (targets is not None and not isinstance(features, dict) and targets.shape == features.shape
            and np.array_equal(targets, features))


def loss_for(model, x, y=None, name="auto"):
    """The fine-tuning loss `name` fitted to the model and its targets: a cross-entropy on
    probabilities for a softmax (or, binary, sigmoid) head, on logits otherwise; 'auto': mean squared
    error when the target is the input (autoencoder), else sparse categorical. `x`: arrays (with
    targets `y`) or a tf.data.Dataset of (features, targets)."""
    if name == "auto" and reconstructs(x, y):
        name = "mse"
        log.info("fine-tuning loss: mse (the target is the input)")
    if name in LOSSES:
        log.info("fine-tuning loss: %s", name)
        return getattr(keras.losses, LOSSES[name])()
    if name == "binary_crossentropy":
        features, _ = sample(x)
        out = np.asarray(model(features, training=False))
        probabilities, cls = bool(np.all(out >= 0) and np.all(out <= 1)), keras.losses.BinaryCrossentropy
    else:
        probabilities, cls = outputs_probabilities(model, x), keras.losses.SparseCategoricalCrossentropy
    log.info("fine-tuning loss: %s on %s", cls.__name__, "probabilities" if probabilities else "logits")
    return cls(from_logits=not probabilities)


def fit_metrics(training, loss=None):
    """The Keras metrics a fit logs (accuracy by default for a cross-entropy `loss`)."""
    if training.metrics_fn:
        return list(training.metrics_fn())
    if training.metrics is not None:
        return list(training.metrics)
    cross_entropy = isinstance(loss, (keras.losses.SparseCategoricalCrossentropy, keras.losses.BinaryCrossentropy))
    return ["accuracy"] if training.loss_fn is None and training.loss in CROSS_ENTROPY and cross_entropy else []


def compile_model(model, learning_rate=1e-3, loss=None, metrics=("accuracy",)):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics))
    return model


_BACKUP = contextvars.ContextVar("collabopt_fit_backup", default=None)


@contextlib.contextmanager
def resumable(backup_dir):
    """Every fit in the block backs up after each epoch to <backup_dir>/<its stage> and resumes from
    a backup it finds there; `backup_dir` is deleted when the block ends normally (its result is
    safe), kept when it raises (and when the process dies)."""
    token = _BACKUP.set(str(backup_dir))
    try:
        yield
    finally:
        _BACKUP.reset(token)
    if tf.io.gfile.exists(str(backup_dir)):
        tf.io.gfile.rmtree(str(backup_dir))


def fit(model, x, y=None, *, epochs, batch_size=64, learning_rate=1e-3, stage="fit", log_dir=None,
        callbacks=(), seed=0, backup_dir=None, training=TrainingSpec()):
    """Compile and fit on arrays x, y or on a tf.data.Dataset x of (features, targets) batches (y None;
    batch_size is then the dataset's); logs each epoch and, with `log_dir`, writes TensorBoard logs there.

    With `backup_dir`, the model and optimizer state are saved there after every epoch (Keras'
    BackupAndRestore) and a fit that finds a backup resumes after its last saved epoch. The backup
    is kept after the fit (the caller deletes it once its result is safe), so a crash after the last
    epoch restores the trained model instead of training again. The folder must be keyed by what
    determines the result (components.common.StageExecutor.resumable); inside `resumable(dir)` the
    default is <dir>/<stage>. `training` (TrainingSpec): the loss and logged metrics. A resumed fit is equivalent to an
    uninterrupted one, not bit-identical (the data order after the resume differs)."""
    if backup_dir is None and _BACKUP.get():
        backup_dir = os.path.join(_BACKUP.get(), stage)
    keras.utils.set_random_seed(seed)
    loss = training.loss_fn(model) if training.loss_fn else loss_for(model, x, y, training.loss)
    compile_model(model, learning_rate, loss, fit_metrics(training, loss))
    cbs = [ProgressLog(stage), *callbacks]
    if backup_dir:  # first: restores before any other callback reads the state
        cbs.insert(0, keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False))
    if log_dir:
        cbs.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0))
    _create_variables(model, x, y)
    if isinstance(x, tf.data.Dataset):
        return model.fit(x, epochs=epochs, verbose=0, callbacks=cbs)
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=cbs)


def _create_variables(model, x, y):
    """The optimizer's slots and the compiled metrics' variables, made before fit: a tf.function whose
    first trace creates variables is traced a second time (~10 s for a TFMOT-wrapped DS-CNN), once
    per fine-tuning."""
    features, targets = tf.nest.map_structure(tf.convert_to_tensor, sample(x, y))
    model.optimizer.build(model.trainable_variables)
    out = model(features, training=False)
    model.compiled_loss(targets, out)
    model.compiled_metrics.update_state(targets, out)
    model.reset_metrics()


def steps_per_epoch(x, batch_size):
    """Batches per epoch of arrays x, or of a tf.data.Dataset (its cardinality; counted if unknown)."""
    if not isinstance(x, tf.data.Dataset):
        return math.ceil(len(x) / batch_size)
    n = int(x.cardinality())
    return n if n >= 0 else int(x.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of a Keras model (FP32, or fake-INT8 for a QAT model) on arrays x, y (the
    configured metric, streamed: core.metrics.of_keras)."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))
