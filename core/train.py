"""Baseline model (DS-CNN family) and the fine-tuning loop every stage shares."""
import logging

import numpy as np

from collabopt.core.data import FASHION_MNIST_SHAPE
from collabopt.core.tfenv import keras

log = logging.getLogger("collabopt")


def ds_cnn(input_shape=FASHION_MNIST_SHAPE, num_classes=10, width=64, blocks=4):
    """A small depthwise-separable CNN shaped like DS-CNN (Zhang et al., 'Hello Edge').

    Conv -> BN -> ReLU, then `blocks` of DepthwiseConv/BN/ReLU + 1x1 Conv/BN/ReLU, average pool, Dense.
    """
    L = keras.layers
    # momentum 0.9: with 0.99 the moving variance needs ~500 steps to forget its init (1.0), and
    # short fine-tuning runs on small subsets evaluate as chance in inference mode.
    bn = dict(momentum=0.9)
    inp = keras.Input(shape=input_shape, name="image")
    x = L.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="conv_1")(inp)
    x = L.BatchNormalization(name="conv_1_bn", **bn)(x)
    x = L.ReLU(name="conv_1_relu")(x)
    for i in range(1, blocks + 1):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw_{i}")(x)
        x = L.BatchNormalization(name=f"dw_{i}_bn", **bn)(x)
        x = L.ReLU(name=f"dw_{i}_relu")(x)
        x = L.Conv2D(width, 1, use_bias=False, name=f"pw_{i}")(x)
        x = L.BatchNormalization(name=f"pw_{i}_bn", **bn)(x)
        x = L.ReLU(name=f"pw_{i}_relu")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="ds_cnn")


class ProgressLog(keras.callbacks.Callback):
    """One log line per epoch, so a pipeline's log shows fine-tuning progress."""

    def __init__(self, stage):
        super().__init__()
        self.stage, self.epochs = stage, None

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if isinstance(v, float))
        log.info("[%s] epoch %d/%s %s", self.stage, epoch + 1, self.epochs, parts)


def compile_model(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    return model


def fit(model, x, y, *, epochs, batch_size=64, learning_rate=1e-3, stage="fit", log_dir=None,
        callbacks=(), seed=0):
    """Compile and fit; logs each epoch and, with `log_dir`, writes TensorBoard logs there."""
    keras.utils.set_random_seed(seed)
    compile_model(model, learning_rate)
    cbs = [ProgressLog(stage), *callbacks]
    if log_dir:
        cbs.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0))
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=cbs)


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of a Keras model (FP32, or fake-INT8 for a QAT model)."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))
