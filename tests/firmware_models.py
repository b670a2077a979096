"""Small real INT8 models for the firmware tests (untrained; PTQ on real Fashion-MNIST images): a
DS-CNN (conv, depthwise, mean), a tiny CNN (max pool, reshape), a Dense-only one with a Softmax,
a residual Add; and the DS-CNN compiled by Vela (one ethos-u operator)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

NAMES = ("ds_cnn", "tiny_cnn", "dense_only", "residual_add")


def _builders():
    from collabopt.core.model import baseline
    from collabopt.core.tfenv import keras
    L = keras.layers

    def tiny_cnn():
        inp = keras.Input((28, 28, 1), name="image")
        x = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(8, 3, strides=2, activation="relu")(inp)))
        return keras.Model(inp, L.Dense(10)(x))

    def dense_only():
        inp = keras.Input((28, 28, 1), name="image")
        x = L.Dense(10)(L.Dense(32, activation="relu")(L.Flatten()(inp)))
        return keras.Model(inp, L.Softmax()(x))

    def residual_add():
        inp = keras.Input((28, 28, 1), name="image")
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
        y = L.Conv2D(8, 3, padding="same")(L.Conv2D(8, 3, padding="same", activation="relu")(x))
        x = L.GlobalAveragePooling2D()(L.ReLU()(L.Add()([x, y])))
        return keras.Model(inp, L.Dense(10)(x))
    return {"ds_cnn": lambda: baseline.ds_cnn(width=16, blocks=1), "tiny_cnn": tiny_cnn,
            "dense_only": dense_only, "residual_add": residual_add}


def eval_data(n=200):
    """(x float32 [n, 28, 28, 1] in [0, 1], y) of Fashion-MNIST's eval split."""
    from collabopt.core.data import examples_io
    x, y = examples_io.load_fashion_mnist(train_limit=10, eval_limit=n)["eval"]
    return x[..., None].astype("float32") / 255.0, y


def int8_models(x):
    """{name: INT8 .tflite bytes} of NAMES, calibrated on x."""
    from collabopt.core.tflite import convert
    return {n: convert.to_int8(build(), convert.representative(x, 50)) for n, build in _builders().items()}


def vela_model(tflite_bytes, out_dir):
    """tflite_bytes compiled by Vela for ethos-u55-128: its bytes."""
    from collabopt.core.npu import vela
    src = os.path.join(str(out_dir), "m.tflite")
    with open(src, "wb") as f:
        f.write(tflite_bytes)
    vela.compile_for_npu(src, out_dir)
    with open(os.path.join(str(out_dir), "m_vela.tflite"), "rb") as f:
        return f.read()
