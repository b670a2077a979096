"""A two-input model (the image, and a 4-value statistic of it) through the PCQAT path, its data
supplied by a TFX-style module_file input_fn (issue 11): fine-tuning, INT8 calibration with one
array per input, the INT8/FP32 evaluation feeding each input by name, and its Rescaling layer (which
TFMOT cannot prune or quantize) left out and named in the report."""
import html
import os

import numpy as np
import pytest

from collabopt.core.tflite import flatbuffer
from collabopt.core import artifact_files, stages
from collabopt.core.model import keras_io, train
from collabopt.core.evaluation import leaf_evaluation
from collabopt.core.report import run_report
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import fashion_mnist_examples

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

MODULE = '''
import tensorflow as tf

SPEC = {"image": tf.io.FixedLenFeature([784], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)}


def _features(records):
    parsed = tf.io.parse_example(records, SPEC)
    flat = tf.cast(parsed["image"], tf.float32) / 255.0
    stats = tf.stack([tf.reduce_mean(flat, 1), tf.math.reduce_std(flat, 1), tf.reduce_max(flat, 1),
                      tf.reduce_mean(tf.cast(flat > 0.5, tf.float32), 1)], axis=1)
    return {"image": tf.reshape(flat, (-1, 28, 28, 1)), "stats": stats}, parsed["label"]


def input_fn(file_pattern, batch_size, split, training):
    ds = tf.data.TFRecordDataset(file_pattern, compression_type="GZIP")
    if training:
        ds = ds.shuffle(512, seed=0)
    return ds.batch(batch_size).map(_features)
'''


def two_input_model():
    image, stats = keras.Input((28, 28, 1), name="image"), keras.Input((4,), name="stats")
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv")(image)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_2")(x)
    x = keras.layers.Flatten()(x)
    s = keras.layers.Rescaling(2.0, name="stats_scale")(stats)  # a preprocessing layer in one branch
    s = keras.layers.Dense(16, activation="relu", name="stats_dense")(s)
    out = keras.layers.Dense(10, name="logits")(keras.layers.Concatenate()([x, s]))
    return keras.Model([image, stats], out)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_input")
    module = tmp / "module.py"
    module.write_text(MODULE)
    return stages.DataSpec(fashion_mnist_examples(tmp / "examples", train_limit=384, eval_limit=128),
                           module_file=str(module))


def test_a_two_input_model_goes_through_the_pcqat_path(spec, tmp_path):
    d = lambda name: str(tmp_path / name)  # noqa: E731
    model = two_input_model()
    train.fit(model, spec.train_dataset(32), epochs=3, learning_rate=3e-3)
    keras_io.save_model(model, os.path.join(d("base"), keras_io.SERVING_DIR))
    fit = stages.FitSpec(epochs=1, batch_size=32)
    pruned = stages.prune(d("base"), spec, d("p"), target_sparsity=0.5, schedule="constant", frequency=1, fit=fit)
    stages.cluster(d("p"), spec, d("c"), number_of_clusters=8, fit=fit)
    qat = stages.preserving_qat(d("c"), spec, d("q"), fit=fit)
    assert qat["scheme"] == "pcqat" and pruned["accuracy"] > 0.4  # 10 classes: chance is 0.1
    conv = stages.to_tflite(d("q"), spec, d("t"), representative_samples=32)
    with open(os.path.join(d("t"), artifact_files.TFLITE_FILE), "rb") as f:
        tflite = f.read()
    it = flatbuffer.interpreter(tflite)
    assert sorted(it.get_signature_runner().get_input_details()) == ["image", "stats"]
    assert all(i["dtype"] == np.int8 for i in it.get_input_details())
    layers = {l["layer"]: l for l in conv["layers"]}
    assert layers["conv_2"]["sparsity"] >= 0.48 and layers["conv_2"]["max_unique_per_channel"] <= 8
    leaf = leaf_evaluation.evaluate_leaf("prune_cluster_pcqat", d("t"), d("q"), spec, d("e"))
    # Beam (per file) and the in-process interpreter agree, each feeding every input by its name.
    assert leaf["int8_accuracy"] == pytest.approx(conv["int8_accuracy"])
    assert leaf["int8_accuracy"] > 0.4 and leaf["eval_examples"] == 128
    assert abs(leaf["fp32_accuracy"] - leaf["int8_accuracy"]) < 0.1
    why = {"prune": "Rescaling is not in TFMOT's pruning registry",
           "qat": "Rescaling is not in TFMOT's 8-bit quantization registry"}
    assert leaf[artifact_files.EXCLUDED_LAYERS] == {"prune": {"stats_scale": why["prune"]}, "cluster": {},
                                                    "qat": {"stats_scale": why["qat"]}}
    run_report.write_report({"prune_cluster_pcqat": d("e")}, d("r"))
    with open(os.path.join(d("r"), artifact_files.REPORT_FILE)) as f:
        page = f.read()
    for technique, reason in why.items():
        assert (f'<td class="l">prune_cluster_pcqat</td><td class="l">{technique}</td><td class="l">stats_scale</td>'
                f'<td class="l">{html.escape(reason)}</td>') in page


def test_ptq_of_a_two_input_model_calibrates_each_input(spec, tmp_path):
    """The issue's failure: the calibrator got one array for two inputs ('expected 2 items got 1')."""
    keras_io.save_model(two_input_model(), os.path.join(str(tmp_path / "base"), keras_io.SERVING_DIR))
    stats = stages.to_tflite(str(tmp_path / "base"), spec, str(tmp_path / "t"), representative_samples=16)
    assert stats["mode"] == "ptq" and 0 <= stats["int8_accuracy"] <= 1
    sample = next(spec.representative(1)())
    assert sorted(sample) == ["image", "stats"] and sample["image"].shape == (1, 28, 28, 1)
