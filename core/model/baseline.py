"""The demo's baseline model: a small depthwise-separable CNN shaped like DS-CNN."""
from collabopt.core.data.examples_io import FASHION_MNIST_SHAPE
from collabopt.core.tfenv import keras


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
