"""The four MLPerf Tiny reference architectures as untrained tf_keras functional models (issue 11).

Written here from the published Keras definitions in github.com/mlcommons/tiny (read, not copied):

| name  | function             | published definition                                                   |
|-------|----------------------|------------------------------------------------------------------------|
| `kws` | `kws_ds_cnn()`       | benchmark/training/keyword_spotting/keras_model.py, `get_model`, 'ds_cnn' |
| `vww` | `vww_mobilenet_v1()` | benchmark/training/visual_wake_words/vww_model.py, `mobilenet_v1`       |
| `ic`  | `ic_resnet8()`       | benchmark/training/image_classification/keras_model.py, `resnet_v1_eembc` |
| `ad`  | `ad_autoencoder()`   | benchmark/training/anomaly_detection/keras_model.py, `get_model`        |

Same layer types, sizes, strides, paddings, biases, BatchNormalization/ReLU placement, dropout, pooling
and heads as the reference. Input sizes come from the reference's defaults: KWS 49x10 MFCC (16 kHz,
1 s clips, 30 ms windows every 20 ms, 10 coefficients: kws_util.py), AD 640 = 128 mel bands x 5 frames
(baseline.yaml). What differs:

- The L2(1e-4) kernel regularizers of KWS, VWW and IC are off by default (`weight_decay=1e-4` puts
  them back); collabopt's fine-tuning stages add no weight decay of their own.
- Layers have names (for reports and `exclude_layers`); the reference leaves Keras' defaults.
- Nothing is compiled: the reference compiles KWS itself (Adam, sparse categorical cross-entropy);
  AD's loss is mean squared error (baseline.yaml), the classifiers' categorical cross-entropy.
- IC: the reference's `conv_filters` now defaults to 26 (its "large" ResNet, ~205k parameters, added in
  2026 next to the original); `ic_resnet8()` defaults to the original 16-filter ResNet-8 that MLPerf
  Tiny benchmarked until then (`filters=26` gives the large one).

KWS keeps a detail of the reference: its average pool is (24, 5) over a 25x5 map (int(49 / 2) rows),
so the last time step of the last feature map is not pooled.
"""
from typing import Callable, NamedTuple, Optional, Tuple

from collabopt.core.tfenv import keras

L = keras.layers

__all__ = ["ARCHITECTURES", "Architecture", "ad_autoencoder", "ic_resnet8", "kws_ds_cnn", "vww_mobilenet_v1"]


def _reg(weight_decay):
    return keras.regularizers.l2(weight_decay) if weight_decay else None


def _bn_relu(x, name):
    return L.Activation("relu", name=name + "_relu")(L.BatchNormalization(name=name + "_bn")(x))


def _conv(x, filters, kernel, name, strides=1, weight_decay=None, init="glorot_uniform"):
    return L.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer=init,
                    kernel_regularizer=_reg(weight_decay), name=name)(x)


def _depthwise_separable(x, filters, name, strides=1, weight_decay=None, init="glorot_uniform"):
    """3x3 depthwise conv (with bias) -> BN -> ReLU -> 1x1 conv (with bias) -> BN -> ReLU."""
    x = L.DepthwiseConv2D(3, strides=strides, padding="same", depthwise_initializer=init,
                          depthwise_regularizer=_reg(weight_decay), name=name + "_dw")(x)
    x = _bn_relu(x, name + "_dw")
    return _bn_relu(_conv(x, filters, 1, name + "_pw", weight_decay=weight_decay, init=init), name + "_pw")


def _softmax_head(x, num_classes, pool_size, init="glorot_uniform"):
    x = L.AveragePooling2D(pool_size=pool_size, name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    return L.Dense(num_classes, activation="softmax", kernel_initializer=init, name="softmax")(x)


def kws_ds_cnn(input_shape=(49, 10, 1), num_classes=12, filters=64, weight_decay=None):
    """Keyword spotting DS-CNN (the 'ds_cnn' of the reference; Hello Edge's DS-CNN-S layout: a 10x4
    stride-2 convolution, then four 3x3 depthwise-separable blocks, all 64 wide)."""
    inp = keras.Input(input_shape, name="mfcc")
    x = _bn_relu(_conv(inp, filters, (10, 4), "conv_1", strides=2, weight_decay=weight_decay), "conv_1")
    x = L.Dropout(0.2, name="dropout_1")(x)
    for i in range(1, 5):
        x = _depthwise_separable(x, filters, f"block_{i}", weight_decay=weight_decay)
    x = L.Dropout(0.4, name="dropout_2")(x)
    out = _softmax_head(x, num_classes, (input_shape[0] // 2, input_shape[1] // 2))
    return keras.Model(inp, out, name="kws_ds_cnn")


# (pointwise filters, depthwise stride) of MobileNetV1's 13 depthwise-separable blocks at alpha = 1.
_MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def vww_mobilenet_v1(input_shape=(96, 96, 3), num_classes=2, alpha=0.25, weight_decay=None):
    """Visual wake words MobileNetV1, width 0.25: a 3x3 stride-2 convolution of 8 filters, 13
    depthwise-separable blocks (16 to 256 filters), plain ReLU (not ReLU6), biases everywhere, He-normal
    kernels, an average pool over the whole 3x3 map, and a Dense softmax (no 1x1-conv head)."""
    init = "he_normal"
    inp = keras.Input(input_shape, name="image")
    x = _bn_relu(_conv(inp, int(32 * alpha), 3, "conv_1", strides=2, weight_decay=weight_decay, init=init), "conv_1")
    for i, (filters, strides) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        x = _depthwise_separable(x, int(filters * alpha), f"block_{i}", strides=strides,
                                 weight_decay=weight_decay, init=init)
    out = _softmax_head(x, num_classes, tuple(x.shape[1:3]))
    return keras.Model(inp, out, name="vww_mobilenet_v1")


def ic_resnet8(input_shape=(32, 32, 3), num_classes=10, filters=16, weight_decay=None):
    """Image classification ResNet-8 (ResNet v1 for CIFAR-10 with three stacks): a 3x3 convolution,
    then three residual stacks of two 3x3 convolutions (filters, 2x, 4x; the 2nd and 3rd stride 2 with
    an unnormalised 1x1 stride-2 convolution on the shortcut). Each BatchNormalization follows its
    convolution, before the Add; ReLU after the Add."""
    init = "he_normal"

    def conv(x, f, k, name, strides=1):
        return _conv(x, f, k, name, strides=strides, weight_decay=weight_decay, init=init)

    inp = keras.Input(input_shape, name="image")
    x = _bn_relu(conv(inp, filters, 3, "conv_1"), "conv_1")
    for stack, (f, strides) in enumerate(((filters, 1), (2 * filters, 2), (4 * filters, 2)), start=1):
        name = f"stack_{stack}"
        y = _bn_relu(conv(x, f, 3, name + "_conv_a", strides), name + "_conv_a")
        y = L.BatchNormalization(name=name + "_conv_b_bn")(conv(y, f, 3, name + "_conv_b"))
        if strides != 1:
            x = conv(x, f, 1, name + "_shortcut", strides)
        x = L.Activation("relu", name=name + "_relu")(L.Add(name=name + "_add")([x, y]))
    out = _softmax_head(x, num_classes, min(x.shape[1:3]), init=init)
    return keras.Model(inp, out, name="ic_resnet8")


def ad_autoencoder(input_dim=640, width=128, bottleneck=8):
    """Anomaly detection fully-connected autoencoder: four Dense(128) -> BN -> ReLU, a Dense(8) -> BN ->
    ReLU bottleneck, four more Dense(128) -> BN -> ReLU, and a linear Dense(640) reconstruction."""
    inp = keras.Input((input_dim,), name="features")
    x = inp
    for i, units in enumerate((width,) * 4 + (bottleneck,) + (width,) * 4, start=1):
        x = _bn_relu(L.Dense(units, name=f"dense_{i}")(x), f"dense_{i}")
    out = L.Dense(input_dim, name="reconstruction")(x)
    return keras.Model(inp, out, name="ad_autoencoder")


class Architecture(NamedTuple):
    """How to build one benchmark model: `fn()` with the defaults gives the published model."""
    fn: Callable[..., "keras.Model"]
    input_shape: Tuple[int, ...]
    task: str  # "classification" (softmax over num_classes) or "autoencoder" (MSE reconstruction)
    num_classes: Optional[int] = None


ARCHITECTURES = {
    "kws": Architecture(kws_ds_cnn, (49, 10, 1), "classification", 12),
    "vww": Architecture(vww_mobilenet_v1, (96, 96, 3), "classification", 2),
    "ic": Architecture(ic_resnet8, (32, 32, 3), "classification", 10),
    "ad": Architecture(ad_autoencoder, (640,), "autoencoder"),
}
