"""A small anomaly-detection autoencoder (MLPerf Tiny AD's shape: 64-d inputs from Fashion-MNIST,
anomaly = class 8, bag) and its Examples, for the tests that fine-tune and judge by MSE or AUC."""
import numpy as np

from collabopt.core.data import examples_io
from collabopt.tests.helpers import save_model_dir

ANOMALY = 8  # bag
FEATURES = 64


def pooled(images):
    """28x28 -> 8x8 = 64 floats in [0, 1] (crop to 24x24, 3x3 average)."""
    x = images[:, 2:26, 2:26].astype(np.float32) / 255.0
    return x.reshape(len(x), 8, 3, 8, 3).mean(axis=(2, 4)).reshape(len(x), FEATURES)


def trained(tmp_path_factory, train_limit=600, eval_limit=200, epochs=20):
    """(Examples uri, autoencoder SavedModel): trained on normal examples only; eval split mixed, its
    label 1 for an anomaly."""
    from collabopt.core.tfenv import keras
    fm = examples_io.load_fashion_mnist(train_limit=train_limit, eval_limit=eval_limit)
    (xt, yt), (xe, ye) = fm["train"], fm["eval"]
    normal = yt != ANOMALY
    uri = str(tmp_path_factory.mktemp("ae_examples"))
    examples_io.write_examples(uri, {"train": (pooled(xt[normal]), np.zeros(normal.sum(), np.int64)),
                              "eval": (pooled(xe), (ye == ANOMALY).astype(np.int64))}, num_shards=2)
    keras.utils.set_random_seed(0)
    inp = keras.Input((FEATURES,), name="features")
    h = keras.layers.Dense(32, activation="relu")(inp)
    h = keras.layers.Dense(8, activation="relu")(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(FEATURES)(h))
    model.compile("adam", "mse")
    x = pooled(xt[normal])
    model.fit(x, x, epochs=epochs, batch_size=32, verbose=0)
    return uri, save_model_dir(tmp_path_factory.mktemp("ae_model") / "model", model)
