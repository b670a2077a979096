"""An anomaly-detection autoencoder (MLPerf Tiny AD's shape, small: 64-d inputs from Fashion-MNIST,
anomaly = class 8, bag) through prune -> to_tflite -> evaluate_leaf (real TFMOT, TFLite and Beam), evaluated
by MSE and by the AUC of its reconstruction error against the 0/1 label."""


import numpy as np
import pytest

from collabopt.core.tflite import flatbuffer
from collabopt.core.data import examples_io
from collabopt.core.model import keras_io
from collabopt.core.evaluation import leaf_evaluation, metrics
from collabopt.core import stages
from collabopt.core.artifact_files import TFLITE_FILE
from collabopt.core.model.train import TrainingSpec
from collabopt.tests import autoencoder

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


@pytest.fixture(scope="module")
def ae(tmp_path_factory):
    return autoencoder.trained(tmp_path_factory)


def test_an_autoencoder_is_pruned_converted_and_evaluated_by_mse_and_auc(ae, tmp_path):
    uri, model_path = ae
    spec = stages.DataSpec(uri, feature_key="image", feature_shape=(64,), target="features")
    mse = TrainingSpec(loss="mse", eval_metric="mse")
    pruned = stages.prune(model_path, spec, str(tmp_path / "pruned"), target_sparsity=0.5,
                          fit=stages.FitSpec(epochs=2, learning_rate=1e-3), training=mse)
    assert pruned["eval_metric"] == "mse" and "accuracy" not in pruned and pruned["sparsity"] > 0.4
    stats = stages.to_tflite(str(tmp_path / "pruned"), spec, str(tmp_path / "tflite"), representative_samples=100,
                             training=mse)
    with open(tmp_path / "tflite" / TFLITE_FILE, "rb") as f:
        tflite = f.read()
    xe, labels = examples_io.read_examples(uri, "eval", feature_shape=(64,))
    int8_out = flatbuffer.int8_outputs(tflite, xe)
    keras_out = keras_io.load_model(str(tmp_path / "pruned")).predict(xe, verbose=0)
    int8_err, keras_err = (np.mean((o - xe) ** 2, axis=1) for o in (int8_out, keras_out))
    assert stats["int8_metric"] == pytest.approx(np.mean(int8_err), rel=1e-6)
    assert pruned["metric"] == pytest.approx(np.mean(keras_err), rel=1e-5)

    leaf = leaf_evaluation.evaluate_leaf("prune_ptq", str(tmp_path / "tflite"), str(tmp_path / "pruned"), spec,
                                str(tmp_path / "eval_mse"), training=mse, requirements={"max_metric_drop": 0.0})
    assert leaf["eval_metric"] == "mse" and leaf["eval_examples"] == 200 and "int8_accuracy" not in leaf
    assert leaf["int8_metric"] == pytest.approx(np.mean(int8_err), rel=1e-6)  # Beam over 2 shards
    assert leaf["fp32_metric"] == pytest.approx(np.mean(keras_err), rel=1e-5)
    assert leaf["metric_drop"] == 0.0 and leaf["blessed"], leaf["reasons"]  # its own baseline: at the limit passes

    auc = TrainingSpec(loss="mse", eval_metric="auc")
    leaf = leaf_evaluation.evaluate_leaf("prune_ptq", str(tmp_path / "tflite"), str(tmp_path / "pruned"), spec,
                                str(tmp_path / "eval_auc"), training=auc)
    pairs = [(e_pos > e_neg) + 0.5 * (e_pos == e_neg) for e_pos in int8_err[labels == 1] for e_neg in int8_err[labels == 0]]
    bins = metrics._bins(int8_err)  # noqa: SLF001  the histogram's resolution bounds the difference
    shared = sum(bp == bn for bp in bins[labels == 1] for bn in bins[labels == 0])
    assert abs(leaf["int8_metric"] - np.mean(pairs)) <= shared / (2 * len(pairs)) + 1e-12
    # bags reconstruct worse than the clothes the AE learnt (0.80 here; chance is 0.5)
    assert leaf["eval_metric"] == "auc" and leaf["int8_metric"] > 0.65 and leaf["fp32_metric"] > 0.65
