"""Layers TFMOT cannot handle are named per technique before any fine-tuning, left out (and the path
still runs to a fully INT8 leaf), or with strict: true fail listing every one (issue 11)."""
import os

import pytest

from collabopt.core.tflite import flatbuffer
from collabopt.core import artifact_files, stages
from collabopt.core.techniques import layer_support
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import fashion_mnist_examples

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

QAT_BN = "a BatchNormalization that does not follow a Conv2D/DepthwiseConv2D/Dense cannot be folded for QAT"


def resnet(shape=(28, 28, 1)):
    """ResNet-style: a BatchNormalization after an Add (TFMOT folds BN only into a Conv2D/Dense), a
    Concatenate, a softmax head."""
    i = keras.Input(shape)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn_1")(keras.layers.Conv2D(8, 3, padding="same")(i)))
    y = keras.layers.BatchNormalization(name="bn_2")(keras.layers.Conv2D(8, 3, padding="same")(x))
    z = keras.layers.BatchNormalization(name="bn_after_add")(keras.layers.Add()([x, y]))
    c = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([z, x]))
    return keras.Model(i, keras.layers.Dense(10, activation="softmax", name="head")(c))


def preprocessing(shape=(28, 28, 1)):
    """Rescaling + Normalization in the model, Dropout before the head."""
    i = keras.Input(shape)
    x = keras.layers.Normalization(mean=0.5, variance=0.25, name="norm")(keras.layers.Rescaling(1 / 255., name="scale")(i))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.Dropout(0.2)(keras.layers.Flatten()(x))
    return keras.Model(i, keras.layers.Dense(10, name="head")(x))


def test_unsupported_layers_are_named_per_technique():
    assert layer_support.unsupported(resnet(), "qat") == {"bn_after_add": QAT_BN}
    assert layer_support.unsupported(resnet(), "prune") == {} == layer_support.unsupported(resnet(), "cluster")
    m = preprocessing()
    assert layer_support.unsupported(m, "prune") == {"scale": "Rescaling is not in TFMOT's pruning registry",
                                                     "norm": "Normalization is not in TFMOT's pruning registry"}
    assert set(layer_support.unsupported(m, "qat")) == {"scale", "norm"}
    assert layer_support.unsupported(m, "cluster") == {}  # no trainable weights: TFMOT passes them through
    # keras.applications: every BatchNormalization follows a (depthwise) convolution, so QAT folds them all.
    mnv2 = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    assert layer_support.unsupported(mnv2, "qat") == {} == layer_support.unsupported(mnv2, "prune")


def test_exclusions_and_strict():
    m = preprocessing()
    left = layer_support.plan(m, "prune", exclude_layers=["co.v", "nomatch"])  # regexes, matched whole
    assert left == {"conv": "excluded by prune.exclude_layers", "scale": "Rescaling is not in TFMOT's pruning registry",
                    "norm": "Normalization is not in TFMOT's pruning registry"}
    with pytest.raises(layer_support.UnsupportedLayersError) as e:
        layer_support.plan(m, "prune", strict=True)
    assert str(e.value) == (
        "prune: 2 layer(s) TFMOT cannot prune (strict: true): scale (Rescaling is not in TFMOT's pruning registry); "
        "norm (Normalization is not in TFMOT's pruning registry). Exclude them with prune.exclude_layers, or drop "
        "strict to leave them out.")
    assert layer_support.plan(m, "prune", exclude_layers=["scale", "norm"], strict=True) == {
        "scale": "excluded by prune.exclude_layers", "norm": "excluded by prune.exclude_layers"}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=256, eval_limit=64)


@pytest.mark.parametrize("make,left_out", [
    (resnet, {"qat": {"bn_after_add": QAT_BN}}),
    (preprocessing, {"prune": {"scale": "Rescaling is not in TFMOT's pruning registry",
                               "norm": "Normalization is not in TFMOT's pruning registry"},
                     "qat": {"scale": "Rescaling is not in TFMOT's 8-bit quantization registry",
                             "norm": "Normalization is not in TFMOT's 8-bit quantization registry"}}),
])
def test_the_pcqat_path_runs_with_the_layers_left_out_and_named(make, left_out, examples, tmp_path):
    """prune -> sparsity-preserving cluster -> PCQAT -> INT8 on models TFMOT cannot take whole: every
    stage finishes, stats.json names what each technique left out and why, the leaf is fully INT8 and
    keeps its sparsity and clusters where they were applied."""
    base = str(tmp_path / "base")
    keras_io_save(make(), base)
    spec = stages.DataSpec(examples)
    fit = stages.FitSpec(epochs=1, batch_size=64)
    stages.prune(base, spec, str(tmp_path / "p"), target_sparsity=0.5, fit=fit)
    stages.cluster(str(tmp_path / "p"), spec, str(tmp_path / "c"), number_of_clusters=8, fit=fit)
    stages.preserving_qat(str(tmp_path / "c"), spec, str(tmp_path / "q"), fit=fit)
    stats = stages.to_tflite(str(tmp_path / "q"), spec, str(tmp_path / "t"), representative_samples=32)
    expected = {"prune": left_out.get("prune", {}), "cluster": {}, "qat": left_out.get("qat", {})}
    assert stats[artifact_files.EXCLUDED_LAYERS] == expected
    assert artifact_files.excluded_layers(str(tmp_path / "q")) == expected
    assert stats["preservation_failures"] == []
    with open(os.path.join(tmp_path, "t", artifact_files.TFLITE_FILE), "rb") as f:
        layers = flatbuffer.layer_stats(f.read())
    assert all(l["dtype"] == "int8" for l in layers)
    judged = [l for l in layers if l["op"] in ("CONV_2D", "FULLY_CONNECTED") and l["layer"] not in expected["prune"]]
    assert judged and all(l["sparsity"] >= 0.48 and l["max_unique_per_channel"] <= 8 for l in judged)


def test_strict_fails_the_stage_before_fine_tuning(examples, tmp_path):
    base = str(tmp_path / "base")
    keras_io_save(resnet(), base)
    with pytest.raises(layer_support.UnsupportedLayersError, match=r"^qat: 1 layer\(s\) TFMOT cannot quantize "
                       r"\(strict: true\): bn_after_add \(a BatchNormalization"):
        stages.preserving_qat(base, stages.DataSpec(examples), str(tmp_path / "q"), strict=True)
    assert not os.path.exists(tmp_path / "q" / "logs")  # nothing was fine-tuned


def keras_io_save(model, path):
    from collabopt.core.model import keras_io
    keras_io.save_model(model, os.path.join(path, keras_io.SERVING_DIR))


def test_the_report_names_the_layers_left_out():
    from collabopt.core.report import html_page
    leaf = {"path": "prune_cluster_pcqat", artifact_files.EXCLUDED_LAYERS: {"prune": {}, "qat": {"bn_after_add": QAT_BN}}}
    page = html_page.left_out([leaf, {"path": "ptq"}])
    assert page.startswith("<h2 id='left-out'>Layers left out</h2>") and page.count("<tr>") == 2
    assert f'<td class="l">prune_cluster_pcqat</td><td class="l">qat</td><td class="l">bn_after_add</td>' in page
    assert html_page.left_out([{"path": "ptq"}]) == ""


def test_a_softmax_model_is_fine_tuned_on_probabilities_a_logits_model_on_logits(examples):
    """The loss follows the model (issue 11): keras.applications and MLPerf Tiny classifiers end in a
    softmax, and cross-entropy from logits on probabilities trains the wrong thing."""
    from collabopt.core.data import examples_io
    from collabopt.core.model import train
    x, y = examples_io.read_examples(examples, "train", limit=64)
    softmax, logits = resnet(), preprocessing()
    assert train.loss_for(softmax, x).get_config()["from_logits"] is False
    assert train.loss_for(logits, x).get_config()["from_logits"] is True
    train.fit(softmax, x, y, epochs=1, batch_size=32)
    assert softmax.loss.get_config()["from_logits"] is False  # what the fit compiled with
