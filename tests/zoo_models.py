"""The layer-coverage zoo (issue 20): models a Keras user brings, each through `paths: all` on tiny
data (1 epoch per stage), shared by tests/test_zoo.py and benchmarks/zoo.py.

keras.applications (tf_keras, weights=None, smallest alpha, softmax head) at 32x32x3 and hand-built
Conv1D, SeparableConv2D, LSTM and GRU keyword spotters. Data: Fashion-MNIST images shaped to each
input (zero-padded and grey in 3 channels for the 32x32x3 models, resized for the small ones; a
sequence model reads the rows as time steps), 4 of its classes."""
import os

import numpy as np

from collabopt.core.tfenv import keras

L = keras.layers
CLASSES = 4
IMAGE = (32, 32, 3)  # the smallest input keras.applications takes
SEQUENCE = (16, 16)  # 16 time steps x 16 features: short enough to unroll the recurrent models
TARGET = "ethos-u55-128"
TRAIN, EVAL = 64, 32  # examples
TREE_TIMEOUT_S = 3600  # one model's `collabopt run` (a hung one fails the test); the slowest, EfficientNetB0, takes ~8 min


def _app(fn, **kwargs):
    return lambda: fn(input_shape=IMAGE, weights=None, classes=CLASSES, **kwargs)


def conv1d_kws():
    i = keras.Input(SEQUENCE, name="mfcc")
    x = L.ReLU(name="c1_relu")(L.BatchNormalization(name="c1_bn")(L.Conv1D(32, 3, padding="same", use_bias=False, name="c1")(i)))
    x = L.ReLU(name="c2_relu")(L.BatchNormalization(name="c2_bn")(L.Conv1D(32, 3, strides=2, use_bias=False, name="c2")(x)))
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(i, L.Dense(CLASSES, activation="softmax", name="head")(x), name="conv1d_kws")


def separable_kws():
    i = keras.Input((*SEQUENCE, 1), name="mfcc")
    x = L.ReLU(name="stem_relu")(L.Conv2D(16, 3, strides=2, padding="same", name="stem")(i))
    for n in (1, 2):
        x = L.SeparableConv2D(32, 3, padding="same", use_bias=False, name=f"sep{n}")(x)
        x = L.ReLU(name=f"sep{n}_relu")(L.BatchNormalization(name=f"sep{n}_bn")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, L.Dense(CLASSES, activation="softmax", name="head")(x), name="separable_kws")


def recurrent_kws(kind, units=16):
    """An LSTM or GRU over the frames (as saved: rolled, dynamic batch; collabopt unrolls it)."""
    i = keras.Input(SEQUENCE, name="mfcc")
    x = getattr(L, kind)(units, name="rnn")(i)
    return keras.Model(i, L.Dense(CLASSES, activation="softmax", name="head")(x), name=f"{kind.lower()}_kws")


A = keras.applications
# name: (builder, input shape)
MODELS = {
    "conv1d": (conv1d_kws, SEQUENCE),
    "separable_conv2d": (separable_kws, (*SEQUENCE, 1)),
    "lstm": (lambda: recurrent_kws("LSTM"), SEQUENCE),
    "gru": (lambda: recurrent_kws("GRU"), SEQUENCE),
    "mobilenet_v2": (_app(A.MobileNetV2, alpha=0.35), IMAGE),
    "mobilenet_v3_small": (_app(A.MobileNetV3Small, alpha=0.75), IMAGE),
    "mobilenet_v3_small_minimalistic": (_app(A.MobileNetV3Small, alpha=0.75, minimalistic=True), IMAGE),
    "mobilenet_v3_large": (_app(A.MobileNetV3Large, alpha=0.75), IMAGE),
    "mobilenet_v3_large_minimalistic": (_app(A.MobileNetV3Large, alpha=0.75, minimalistic=True), IMAGE),
    "efficientnet_b0": (_app(A.EfficientNetB0), IMAGE),
}
# The PCQAT leaf of these keeps its zeros and clusters (the preservation gate) in these layers, none
# left out: TFMOT has no quantize config for Conv1D / SeparableConv2D, collabopt rewrites them
# (core/techniques/rewrite).
PRESERVED = {"conv1d": ("c1", "c2"), "separable_conv2d": ("sep1", "sep2")}


def shaped(images, shape):
    """uint8 Fashion-MNIST [N, 28, 28] -> uint8 [N, *shape]: zero-padded (and grey in 3 channels) to
    a larger image, resized to a smaller one."""
    from collabopt.core.tfenv import tf
    h, w = shape[:2]
    if h >= images.shape[1]:
        lo, extra = (h - images.shape[1]) // 2, h - images.shape[1]
        x = np.pad(images, ((0, 0), (lo, extra - lo), (lo, extra - lo)))
    else:
        x = tf.image.resize(images[..., None].astype("float32"), (h, w)).numpy()[..., 0]
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return np.repeat(x[..., None], shape[2], -1) if len(shape) == 3 else x


def write_examples(uri, shape, train=TRAIN, eval_=EVAL):
    """An Examples folder (Split-train, Split-eval) of the first CLASSES Fashion-MNIST classes shaped
    as `shape`; returns `uri`."""
    from collabopt.core.data import examples_io
    d = examples_io.load_fashion_mnist(train_limit=4 * train, eval_limit=4 * eval_)
    splits = {}
    for split, n in (("train", train), ("eval", eval_)):
        x, y = d[split]
        keep = y < CLASSES
        splits[split] = (shaped(x[keep][:n], shape), y[keep][:n])
    examples_io.write_examples(uri, splits)
    return uri


def prepare(name, work):
    """The model's Examples and its baseline (1 epoch on them, saved as a user's SavedModel) under
    `work`; returns the tree config of its `paths: all` run."""
    from collabopt.core import stages
    from collabopt.core.data.scale import INT_SCALE, own_rescaling  # data.scale auto's rule
    from collabopt.core.model import keras_io, train
    build, shape = MODELS[name]
    examples = write_examples(os.path.join(work, "examples"), shape)
    keras.utils.set_random_seed(0)
    model = build()
    spec = stages.DataSpec(examples, feature_shape=shape, scale=1.0 if own_rescaling(model.get_config()) else INT_SCALE)
    train.fit(model, spec.train_dataset(32), epochs=1, learning_rate=1e-3, stage="baseline")
    keras_io.save_model(model, os.path.join(work, "model", keras_io.SERVING_DIR))
    return {"name": f"zoo-{name.replace('_', '-')}", "paths": "all",
            "examples": {"uri": examples}, "baseline": {"model_uri": os.path.join(work, "model")},
            "data": {"feature_shape": list(shape), "train_limit": TRAIN, "eval_limit": EVAL},
            "prune": {"target_sparsity": 0.5, "epochs": 1}, "cluster": {"number_of_clusters": 8, "epochs": 1},
            "qat": {"epochs": 1}, "convert": {"representative_samples": EVAL}, "npu": {"targets": [TARGET]}}



def run(name, work):
    """The model's `paths: all` tree as a user runs it (`collabopt run`, a child process); returns
    (exit code, log text, root)."""
    import yaml

    from collabopt.tests.cli_processes import collabopt
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "tree.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(prepare(name, work), f)
    root = os.path.join(work, "root")
    code, log = collabopt("run", config, "--root", root, log=os.path.join(work, "run.log"), timeout=TREE_TIMEOUT_S)
    return code, log, root


def leaves(root):
    """{path: leaf} of the run under `root` from MLMD (mlmd.results.leaves), each with 'tflite': its
    Convert_<path> node's INT8 file and 'kernels_int8' / 'io_int8' read from that flatbuffer."""
    from collabopt import runners
    from collabopt.components import keys
    from collabopt.core import artifact_files
    from collabopt.mlmd import results
    from collabopt.tests.helpers import int8_io, int8_kernel_layers
    store = results.connect(runners.paths(root)[1])
    execs = results.executions(store)
    files = {e["node"][len("Convert_"):]: os.path.join(e["outputs"][keys.TFLITE_MODEL_KEY][0].uri, artifact_files.TFLITE_FILE)
             for e in execs if e["node"].startswith("Convert_") and e["outputs"].get(keys.TFLITE_MODEL_KEY)}
    out = {}
    for leaf in results.leaves(store, execs=execs):
        path = files.get(leaf["path"])
        if path and os.path.isfile(path):
            leaf["tflite"], leaf["kernels_int8"], leaf["io_int8"] = path, int8_kernel_layers(path)[1], int8_io(path)
        out[leaf["path"]] = leaf
    return out
