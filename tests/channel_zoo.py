"""Small test models for channel surgery, one per dependency pattern it must handle."""
from collabopt.core.tfenv import keras

L = keras.layers


def chain():
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(24, 3, strides=2, padding="same", name="c2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.Conv2D(10, 1, name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, x, name="chain")


def residual():
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    for i in range(2):
        y = L.Conv2D(8, 3, padding="same", activation="relu", name="b%d_c1" % i)(x)
        y = L.Conv2D(16, 3, padding="same", name="b%d_c2" % i)(y)
        x = L.Add(name="b%d_add" % i)([x, y])
        x = L.ReLU(name="b%d_relu" % i)(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(5, name="fc")(x), name="residual")


def concat():
    inp = keras.Input((10, 10, 3), name="img")
    a = L.Conv2D(8, 3, padding="same", name="a")(inp)
    b = L.Conv2D(16, 1, name="b")(inp)
    x = L.Concatenate(name="cat")([a, b])
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(12, 3, name="c")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x), name="concat")


def separable():
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(name="conv_bn")(x)
    x = L.ReLU(6.0, name="conv_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.LeakyReLU(name="dw_relu")(x)
    x = L.Conv2D(24, 1, name="pw")(x)
    x = L.BatchNormalization(name="pw_bn")(x)
    x = L.SeparableConv2D(16, 3, padding="same", name="sep")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="separable")


def squeeze_excite():
    inp = keras.Input((8, 8, 3), name="img")
    x = L.Rescaling(1 / 255.0, name="scale")(inp)
    x = L.ZeroPadding2D(name="pad")(x)
    x = L.Conv2D(16, 3, name="trunk")(x)
    x = L.BatchNormalization(name="trunk_bn")(x)
    t = L.ReLU(name="trunk_relu")(x)
    s = L.GlobalAveragePooling2D(keepdims=True, name="se_gap")(t)
    s = L.Conv2D(8, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, name="se_expand")(s)
    s = L.ReLU(6.0, name="se_relu6")(s + 3.0) * (1.0 / 6.0)  # hard sigmoid as TFOpLambda ops
    x = L.Multiply(name="se_mul")([t, s])
    g = L.GlobalAveragePooling2D(name="se2_gap")(x)
    g = L.Dense(4, activation="relu", name="se2_fc1")(g)
    g = L.Dense(16, activation="sigmoid", name="se2_fc2")(g)
    g = L.Reshape((1, 1, 16), name="se2_reshape")(g)
    x = L.Multiply(name="se2_mul")([x, g])
    x = L.Conv2D(8, 1, name="head")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="se")


def sequential():
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, name="s1"), L.BatchNormalization(name="s1_bn"),
                             L.ReLU(name="s1_relu"), L.Flatten(name="flat"), L.Dense(3, name="fc")], name="seq")
