"""Bad models and bad data, each a named one-line error from the first stage that reads it, before any
fine-tuning: `collabopt run: node <node> failed: <what and where>`, exit code 1, no traceback; the
earlier run in the same folder keeps its files and its MLMD report. (Configs, the CLI, reports and
KFP: tests/test_bad_input_matrix.py.)"""
import gzip
import json
import os
import shutil

import numpy as np
import pytest

from collabopt.core import artifact_files
from collabopt.core.data import examples_io
from collabopt.tests.bad_input_fixtures import (Case, assert_intact, assert_one_line, check, collabopt, report_json,
                                                write)
from collabopt.tests.bad_input_fixtures import earlier  # noqa: F401 - a fixture
from collabopt.tests.helpers import dense_model, save_model_dir, subclassed_model

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

CONVERT = "collabopt run: node Convert_ptq failed: "  # the first stage of paths [ptq] from a given model
# A bad model is refused when the config is loaded (pipelines/config.py), by the check its first stage makes.
MODEL = "collabopt run: {config}: invalid tree_config config: baseline.model_uri: "
TRAIN_FILE = "{examples}/Split-train/data_tfrecord-00000-of-00001.gz"


def run(model=None, examples=None, trained=False, module=None, paths=("ptq",), **data_params):
    """`collabopt run` of `paths` in the earlier run's folder: from `model(earlier, tmp)` (default: a
    good one; `trained`: the baseline trainer's) on `examples(earlier, tmp)` (default: good ones), the
    records read by a training.module_file holding `module` (default: none)."""
    def make(e, tmp):
        m = None if trained else model(e, tmp) if model else e.model
        x = examples(e, tmp) if examples else e.examples
        cfg = {"name": "bad-input", "paths": list(paths), "examples": {"uri": x},
               "baseline": {"model_uri": m} if m else {"epochs": 1, "width": 16, "blocks": 1},
               "data": {"train_limit": 300, "eval_limit": 100, **data_params}, "npu": {"targets": ["ethos-u55-128"]}}
        if module is not None:
            cfg["training"] = {"module_file": write(tmp / "user_module.py", module)}
        config = write(tmp / "bad.yaml", cfg)
        return ["run", config, "--root", e.root], {"model": m, "examples": x, "config": config,
                                                   "module": cfg.get("training", {}).get("module_file")}
    return make


# ---------------------------------------------------------------- bad models

def not_a_saved_model(e, tmp):
    os.makedirs(tmp / "model")
    write(tmp / "model" / "weights.txt", "nothing here")
    return str(tmp / "model")


def keras3_model():
    import keras as keras3  # Keras 3, installed next to tf_keras
    inp = keras3.Input((28, 28, 1))
    return keras3.Model(inp, keras3.layers.Dense(10)(keras3.layers.Flatten()(inp)))


def keras3_export(e, tmp):
    keras3_model().export(str(tmp / "model"), verbose=False)
    return str(tmp / "model")


def keras3_file(e, tmp):
    keras3_model().save(str(tmp / "model.keras"))
    return str(tmp / "model.keras")


def keras3_h5(e, tmp):
    keras3_model().save(str(tmp / "model.h5"))
    return str(tmp / "model.h5")


def model_file(name, save=lambda m, path: m.save(path), damage=lambda b: b):
    """A tf_keras model saved to the file `name` by `save`, its bytes then passed through `damage`."""
    def make(e, tmp):
        path = str(tmp / name)
        save(dense_model(), path)
        with open(path, "rb") as f:
            content = f.read()
        write(path, damage(content))
        return path
    return make


def copy_of_good(e, tmp, damage):
    shutil.copytree(e.model, tmp / "model")
    damage(tmp / "model" / "Format-Serving")
    return str(tmp / "model")


def subclassed(e, tmp):
    return save_model_dir(tmp / "model", subclassed_model())


MODEL_CASES = [
    Case("not a SavedModel", run(not_a_saved_model),
         MODEL + "'{model}' is not a SavedModel: no saved_model.pb in it or in its Format-Serving/ folder"),
    Case("Keras 3 SavedModel", run(keras3_export), MODEL + "'{model}' is a Keras 3 SavedModel (model.export()): it "
         "has no keras_metadata.pb; collabopt fine-tunes tf_keras models: build and save it with tf_keras …"),
    Case("Keras 3 .keras file", run(keras3_file), MODEL + "'{model}' was saved by Keras 3.…; collabopt fine-tunes "
         "tf_keras models: build and save it with tf_keras (import tf_keras as keras; model.save(path, save_format='tf'))"),
    Case("Keras 3 .h5 file", run(keras3_h5), MODEL + "'{model}' was saved by Keras 3.…; collabopt fine-tunes tf_keras "
         "models: build and save it with tf_keras (import tf_keras as keras; model.save(path, save_format='tf'))"),
    Case("weights-only .h5", run(model_file("model.h5", lambda m, p: m.save_weights(p))),
         MODEL + "'{model}' holds weights only (save_weights): save the whole model (model.save(path)) so collabopt "
         "can rebuild it"),
    Case("truncated .h5", run(model_file("model.h5", damage=lambda b: b[:len(b) // 2])),
         MODEL + "'{model}' is not a readable HDF5 file (corrupt or truncated?): Unable to …"),
    Case("truncated .keras", run(model_file("model.keras", damage=lambda b: b[:len(b) // 2])),
         MODEL + "'{model}' is not a .keras file (not a zip archive; corrupt or truncated?)"),
    Case("a file that is no model", run(model_file("model.tflite", lambda m, p: write(p, b"TFL3"))),
         MODEL + "'{model}' is a file but not a model: give a SavedModel folder, a TFX Model artifact folder "
         "(Format-Serving/) or a .keras, .h5, .hdf5 file"),
    Case("SavedModel without variables/", run(lambda e, tmp: copy_of_good(e, tmp, lambda d: shutil.rmtree(d / "variables"))),
         MODEL + "'{model}/Format-Serving': the SavedModel's variables/ folder is missing or incomplete (no "
         "variables.index or variables.data-*): copy the whole SavedModel folder"),
    Case("corrupt saved_model.pb", run(lambda e, tmp: copy_of_good(e, tmp, lambda d: write(d / "saved_model.pb", b"garbage"))),
         MODEL + "'{model}/Format-Serving': saved_model.pb is not a SavedModel (corrupt or truncated)"),
    Case("input shape mismatch", run(lambda e, tmp: save_model_dir(tmp / "model", dense_model(shape=(28, 28, 3)))),
         MODEL + "'{model}': the model's input 'pixels' takes examples of shape (28, 28, 3), but data.feature_shape "
         "is [28, 28, 1]"),
    Case("feature_shape mismatch", run(feature_shape=[32, 32, 1]), MODEL + "'{model}': the model's input 'image' takes "
         "examples of shape (28, 28, 1), but data.feature_shape is [32, 32, 1]"),
    Case("subclassed model", run(subclassed), MODEL + "'{model}': only Sequential/Functional tf_keras models are "
         "supported; got a subclassed model (Subclassed). Rebuild it with the Functional API."),
]


# ---------------------------------------------------------------- bad data

def examples(e, tmp, change):
    """The earlier run's Examples, re-written with `change(x, y)` applied to the train split."""
    x, y = examples_io.read_examples(e.examples, "train", scale=1.0)
    examples_io.write_examples(str(tmp / "examples"), {"train": change(x.copy(), y.copy()),
                                                "eval": examples_io.read_examples(e.examples, "eval", scale=1.0)})
    return str(tmp / "examples")


def nan_at_17(x, y):
    x[17, 3, 3] = np.nan
    return x, y


def label_12_at_42(x, y):
    y[42] = 12
    return x, y


def damaged(e, tmp, split, damage):
    """A copy of the earlier run's Examples with the file of `split` damaged: damage(bytes) -> bytes."""
    shutil.copytree(e.examples, tmp / "examples")
    (path,) = examples_io.split_files(str(tmp / "examples"), split)
    with open(path, "rb") as f:
        content = f.read()
    write(path, damage(content))
    return str(tmp / "examples")


def without_eval(e, tmp):
    shutil.copytree(e.examples, tmp / "examples")
    shutil.rmtree(tmp / "examples" / "Split-eval")
    return str(tmp / "examples")


DATA_CASES = [
    Case("NaN features", run(examples=lambda e, tmp: examples(e, tmp, nan_at_17)), CONVERT + "Examples split 'train': "
         + TRAIN_FILE + ": record 17: feature 'image' holds NaN or infinite values (1 of the 300 records of its batch do)"),
    Case("labels outside the classes", run(examples=lambda e, tmp: examples(e, tmp, label_12_at_42)),
         CONVERT + "Examples split 'train': " + TRAIN_FILE + ": record 42: label 'label' is 12, outside the model's 10 "
         "classes (0-9) (1 of the 300 labels of its batch are)"),
    Case("labels outside the baseline's classes", run(examples=lambda e, tmp: examples(e, tmp, label_12_at_42), trained=True),
         "collabopt run: node BaselineTrainer failed: Examples split 'train': " + TRAIN_FILE + ": record 42: label "
         "'label' is 12, outside the model's 10 classes (0-9) (1 of the 300 labels of its batch are)"),
    Case("truncated TFRecord", run(examples=lambda e, tmp: damaged(e, tmp, "train", lambda b: b[:len(b) // 2])),
         CONVERT + "Examples split 'train': " + TRAIN_FILE + " is not a complete GZIP TFRecord file: truncated record at …"),
    # cut past the 200 records PTQ calibrates with, within the 300 the run trains on: a ptq-only run
    # fails as one that fine-tunes does (whose reference ptq leaf meets the cut first)
    *(Case(f"truncated TFRecord past the calibration: {path}",
           run(examples=lambda e, tmp: damaged(e, tmp, "train", lambda b: b[:len(b) * 9 // 10]), paths=(path,)),
           f"collabopt run: node {node} failed: Examples split 'train': " + TRAIN_FILE + " is not a complete GZIP "
           "TFRecord file: truncated record at …") for path, node in (("ptq", "Convert_ptq"), ("prune_ptq", "Convert_ptq"))),
    Case("garbage TFRecord", run(examples=lambda e, tmp: damaged(e, tmp, "eval", lambda b: b"\0garbage" * 512)),
         CONVERT + "Examples split 'eval': {examples}/Split-eval/data_tfrecord-00000-of-00001.gz is not a complete GZIP "
         "TFRecord file: inflate() failed with error -3: incorrect header check"),
    Case("empty split", run(examples=lambda e, tmp: damaged(e, tmp, "eval", lambda b: gzip.compress(b""))),
         CONVERT + "Examples split 'eval' has no records (1 file(s))"),
    Case("missing split", run(examples=without_eval), CONVERT + "Examples split 'eval' does not exist "
         "({examples}/Split-eval); available splits: train"),
    Case("missing feature key", run(feature_key="pixels"), CONVERT + "Examples split 'train' has no feature 'pixels'; "
         "available features: image, label"),
    Case("missing label key", run(label_key="target"), CONVERT + "Examples split 'train' has no feature 'target'; "
         "available features: image, label"),
]


# ---------------------------------------------------------------- bad data from a module file's input_fn

def reader(change="x, y", end=""):
    """A module file whose input_fn reads the Examples as collabopt does, then `(x, y) = change`, and
    `end` applied to the dataset (e.g. .repeat())."""
    return ("import tensorflow as tf\n"
            "SPEC = {'image': tf.io.FixedLenFeature([784], tf.int64), 'label': tf.io.FixedLenFeature([], tf.int64)}\n"
            "def parse(records):\n"
            "    p = tf.io.parse_example(records, SPEC)\n"
            "    x, y = tf.reshape(tf.cast(p['image'], tf.float32) / 255.0, (-1, 28, 28, 1)), p['label']\n"
            f"    return {change}\n"
            "def input_fn(file_pattern, batch_size, split, training):\n"
            "    ds = tf.data.TFRecordDataset(file_pattern, compression_type='GZIP').batch(batch_size).map(parse)\n"
            f"    return ds{end}\n")


def raising(body):
    return f"def input_fn(file_pattern, batch_size, split, training):\n    {body}\n"


IN_TRAIN = CONVERT + "'{module}': input_fn(...) for split 'train': "
MODULE_CASES = [
    Case("module: labels outside the classes", run(module=reader("x, y * 0 + 12")), IN_TRAIN + "example 0: label 12 is "
         "not one of the model's 10 classes (0-9) (… of the … labels of its batch are not)"),
    Case("module: input_fn raises", run(module=raising("raise ValueError('no data here')")),
         CONVERT + "'{module}': input_fn(...) failed: ValueError: no data here"),
    Case("module: input_fn exits", run(module=raising("raise SystemExit(3)")),
         CONVERT + "'{module}': input_fn(...) failed: it called sys.exit(3)"),
    Case("module: input_fn interrupts itself", run(module=raising("raise KeyboardInterrupt")),
         CONVERT + "'{module}': input_fn(...) failed: KeyboardInterrupt"),
    Case("module: wrong shape", run(module=reader("tf.reshape(x, (-1, 784)), y")), IN_TRAIN + "feature 'image' has "
         "examples of shape (784), but the model's input 'image' takes (28, 28, 1)"),
    Case("module: wrong dtype", run(module=reader("tf.strings.as_string(x), y")), IN_TRAIN + "feature 'image' holds "
         "strings, not numbers"),
    Case("module: empty", run(module=reader(end=".take(0)")), IN_TRAIN + "its dataset is empty (the split holds 300 "
         "records)"),
    Case("module: NaN", run(module=reader("x * float('nan'), y")), IN_TRAIN + "example 0: feature 'image' holds NaN or "
         "infinite values (… of the … examples of its batch do)"),
    Case("module: not (features, targets)", run(module=reader("x")), CONVERT + "'{module}': input_fn returned a dataset "
         "of TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32, name=None), not of (features, targets) pairs"),
]


@pytest.mark.parametrize("case", MODEL_CASES + DATA_CASES + MODULE_CASES, ids=lambda c: c.id)
def test_bad_model_or_data(case, earlier, tmp_path, capsys, caplog):  # noqa: F811 - earlier is a fixture
    check(case, earlier, tmp_path, capsys, caplog, untouched=False)


def test_a_real_process_prints_one_line_and_no_traceback(earlier, tmp_path):  # noqa: F811
    """As a user sees it: TFX and absl log to this process's stderr, and no traceback is among them."""
    argv, names = run(examples=lambda e, tmp: examples(e, tmp, nan_at_17))(earlier, tmp_path)
    assert_one_line(*collabopt(*argv), 1, "run", (CONVERT + "Examples split 'train': " + TRAIN_FILE + ": record 17: "
                                                   "feature 'image' holds NaN or infinite values …").format(**names))
    assert_intact(earlier)


def test_an_endless_module_dataset_is_read_one_epoch(earlier, tmp_path):  # noqa: F811
    """An input_fn dataset that never ends (.repeat()) is read one epoch at a time: as many examples as
    the files hold records (the eval split's 100, though eval_limit is 128); the run finishes."""
    argv, _ = run(module=reader(end=".repeat()"), eval_limit=128)(earlier, tmp_path)
    code, out, err = collabopt(*argv, timeout=900)
    assert code == 0 and "Traceback" not in out + err, err[-3000:]
    (leaf,) = json.loads(report_json(earlier.mlmd, "bad-input"))
    assert artifact_files.read_leaf(leaf["uri"])["eval_examples"] == 100
    assert_intact(earlier, rewritten=["report.html"])  # the newest run's report is published there
