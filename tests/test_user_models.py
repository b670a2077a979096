"""Models a TFX user brings (issue 11, done-when 2 and 3): a SavedModel on disk and an Examples folder,
through the PCQAT path (prune -> sparsity-preserving cluster -> PCQAT -> INT8 -> Vela).

- A functional ResNet with Add + Concatenate + BatchNormalization (two BNs TFMOT cannot fold) and a
  softmax head, trained here, through a real TFX pipeline (`model_uri`, `examples.uri`): fully INT8
  leaves, sparsity and clusters per layer in the flatbuffer, the left-out BNs named with their reason
  in stats.json, MLMD and the report; fine-tuned on probabilities (from_logits=False); the PCQAT
  leaf's INT8 accuracy within 1.5 pp of the PTQ leaf's.
- keras.applications MobileNetV2 (softmax) through INT8 -> Vela, and a model with Rescaling +
  Normalization + Dropout through the PCQAT path, by core.stages on tiny data (the functions the pipeline's executors call).
- strict: true fails before any fine-tuning with one error naming every unsupported layer.
"""
import html
import json
import logging
import os

import numpy as np
import pytest

from collabopt.mlmd import results
from collabopt.core import artifact_files, stages
from collabopt.core.data import examples_io
from collabopt.core.model import keras_io, train
from collabopt.core.techniques import layer_support
from collabopt.core.evaluation import leaf_evaluation
from collabopt.core.report import run_report
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import by_node, int8_io, int8_kernel_layers, pcqat_stages, run_tree

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

L = keras.layers
BN_WHY = "a BatchNormalization that does not follow a Conv2D/DepthwiseConv2D/Dense cannot be folded for QAT"
RESNET_LEFT_OUT = {"prune": {}, "cluster": {}, "qat": {"bn_after_add": BN_WHY, "bn_after_concat": BN_WHY}}
PROBABILITIES = "fine-tuning loss: SparseCategoricalCrossentropy on probabilities"


def user_resnet(shape=(28, 28, 1), classes=10):
    """A residual block (BN after the Add), a downsampling Concatenate (BN after it), a softmax head.
    BN momentum 0.9: the default 0.99 needs more steps than this short training takes."""
    def bn(name):
        return L.BatchNormalization(momentum=0.9, name=name)
    i = keras.Input(shape, name="image")
    x = L.ReLU(name="stem_relu")(bn("stem_bn")(L.Conv2D(16, 3, 2, "same", name="stem")(i)))
    y = bn("res_bn")(L.Conv2D(16, 3, padding="same", name="res_conv")(x))
    x = L.ReLU(name="add_relu")(bn("bn_after_add")(L.Add(name="add")([x, y])))
    down = L.ReLU(name="down_relu")(L.Conv2D(16, 3, 2, "same", name="down")(x))
    x = L.Concatenate(name="concat")([down, L.MaxPooling2D(2, name="pool")(x)])
    x = bn("bn_after_concat")(x)
    x = L.ReLU(name="mix_relu")(L.Conv2D(32, 3, padding="same", name="mix")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, L.Dense(classes, activation="softmax", name="head")(x), name="user_resnet")


def preprocessing_model(shape=(28, 28, 1), classes=10):
    """Rescaling + Normalization inside the model, Dropout before the (logits) head."""
    i = keras.Input(shape, name="image")
    x = L.Normalization(mean=0.2, variance=0.1, name="norm")(L.Rescaling(2.0, offset=-0.5, name="scale")(i))
    x = L.Conv2D(16, 3, strides=2, activation="relu", name="conv")(x)
    x = L.Dropout(0.3, name="drop")(L.Flatten(name="flat")(x))
    return keras.Model(i, L.Dense(classes, name="head")(x), name="preprocessing")


def mobilenet_v2(shape=(32, 32, 3), classes=10):
    """keras.applications as a user takes it: softmax head (the default), untrained."""
    return keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=classes)


_kernel_layers = int8_kernel_layers


def _assert_int8_io(tflite_path):
    assert int8_io(tflite_path)


# ---------------------------------------------------------------- the pipeline: a trained ResNet

@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    """The user's trained ResNet (SavedModel) and Examples (3000 / 1000 Fashion-MNIST images) through
    `paths: [prune_cluster_pcqat]` (and the ptq reference) on LocalDagRunner; the log lines it wrote."""
    root = tmp_path_factory.mktemp("resnet")
    examples = str(root / "examples")
    examples_io.write_examples(examples, examples_io.load_fashion_mnist(train_limit=3000, eval_limit=1000), num_shards=2)
    x, y = examples_io.read_examples(examples, "train")
    keras.utils.set_random_seed(0)  # the initial weights too: unseeded, 3 epochs gave 66-73%
    model = user_resnet()
    train.fit(model, x, y, epochs=6, batch_size=64, learning_rate=3e-3, stage="user-training")
    keras_io.save_model(model, str(root / "model"))
    config = {
        "name": "user-resnet", "paths": ["prune_cluster_pcqat"],
        "baseline": {"model_uri": str(root / "model")}, "examples": {"uri": examples},
        "data": {"train_limit": 3000, "eval_limit": 1000},
        "prune": {"target_sparsity": 0.5, "epochs": 2, "learning_rate": 1e-3},
        "cluster": {"number_of_clusters": 8, "epochs": 1, "learning_rate": 1e-4},
        "qat": {"epochs": 1, "learning_rate": 1e-4},
        "convert": {"representative_samples": 100},
        "npu": {"targets": ["ethos-u55-128"]},
    }
    handler = _Records()
    logging.getLogger("collabopt").setLevel(logging.INFO)
    logging.getLogger("collabopt").addHandler(handler)
    try:
        mlmd = run_tree(root / "run", config)
    finally:
        logging.getLogger("collabopt").removeHandler(handler)
    return mlmd, handler.lines, (x, y)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_resnet_pcqat_leaf_is_int8_sparse_clustered_with_the_bns_left_out(resnet_run):
    mlmd, _, _ = resnet_run
    store, nodes = by_node(mlmd)
    leaves = {l["path"]: l for l in results.leaves(store)}
    assert sorted(leaves) == ["prune_cluster_pcqat", "ptq"]
    assert leaves["prune_cluster_pcqat"][artifact_files.EXCLUDED_LAYERS] == RESNET_LEFT_OUT  # MLMD
    for path, node in (("ptq", "Convert_ptq"), ("prune_cluster_pcqat", "Convert_prune_cluster_pcqat")):
        tflite = os.path.join(nodes[node]["outputs"]["tflite_model"][0].uri, artifact_files.TFLITE_FILE)
        _assert_int8_io(tflite)
        kernels, all_int8 = _kernel_layers(tflite)
        assert all_int8 and len(kernels) == 5, path  # stem, res_conv, down, mix, head
        assert leaves[path]["npu"]["ethos-u55-128"]["npu_op_pct"] == 100.0
    for l in _kernel_layers(os.path.join(nodes["Convert_prune_cluster_pcqat"]["outputs"]["tflite_model"][0].uri,
                                         artifact_files.TFLITE_FILE))[0]:
        assert l["sparsity"] >= 0.45 and l["max_unique_per_channel"] <= 8, l
    qat = nodes["PCQAT"]["outputs"]["qat_model"][0]
    with open(os.path.join(qat.uri, artifact_files.STATS_FILE)) as f:
        stats = json.load(f)
    assert (stats["scheme"], stats[artifact_files.EXCLUDED_LAYERS]) == ("pcqat", RESNET_LEFT_OUT)
    assert not [r for r in leaves["prune_cluster_pcqat"]["reasons"] if r.startswith("preservation")]


def test_the_report_names_the_left_out_layers_with_their_reason(resnet_run):
    mlmd, _, _ = resnet_run
    with open(os.path.join(os.path.dirname(mlmd), artifact_files.REPORT_FILE)) as f:
        page = f.read()
    table = page[page.index("<h2 id='left-out'>"):]
    for layer in ("bn_after_add", "bn_after_concat"):
        assert (f'<td class="l">prune_cluster_pcqat</td><td class="l">qat</td><td class="l">{layer}</td>'
                f'<td class="l">{BN_WHY}</td>') in table


def test_softmax_model_is_fine_tuned_on_probabilities_and_pcqat_stays_within_1_5_pp_of_ptq(resnet_run):
    mlmd, lines, (x, _) = resnet_run
    store, nodes = by_node(mlmd)
    fits = [line for line in lines if line.startswith("fine-tuning loss:")]
    assert fits == [PROBABILITIES] * 3, fits  # Pruner, SparseClusterer, PCQAT
    for node, key in (("Pruner", "pruned_model"), ("SparseClusterer", "clustered_model")):
        model = keras_io.load_model(nodes[node]["outputs"][key][0].uri)
        assert train.loss_for(model, x).get_config()["from_logits"] is False
    leaves = {l["path"]: l for l in results.leaves(store)}
    ptq, pcqat = leaves["ptq"]["int8_accuracy"], leaves["prune_cluster_pcqat"]["int8_accuracy"]
    assert ptq > 0.7, ptq  # a trained model: the comparison means something
    assert 100 * (ptq - pcqat) <= 1.5, (ptq, pcqat)


# ---------------------------------------------------------------- core.stages on tiny data

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """320 / 64 Fashion-MNIST images, as they are (28x28x1) and zero-padded to 32x32x3 (MobileNetV2)."""
    d = examples_io.load_fashion_mnist(train_limit=320, eval_limit=64)
    gray = str(tmp_path_factory.mktemp("gray"))
    examples_io.write_examples(gray, d)
    rgb = str(tmp_path_factory.mktemp("rgb"))
    examples_io.write_examples(rgb, {k: (np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, -1), y)
                              for k, (x, y) in d.items()})
    return {(28, 28, 1): gray, (32, 32, 3): rgb}


def _pcqat_path(model, examples, shape, tmp_path):
    """The PCQAT path through core.stages from the model saved as a user's SavedModel."""
    base = keras_io.save_model(model, str(tmp_path / "model"))
    qat, stats, tflite, npu = pcqat_stages(base, stages.DataSpec(examples, feature_shape=shape), tmp_path)
    assert qat["scheme"] == "pcqat"
    return stats, tflite, npu


def test_mobilenet_v2_from_keras_applications(tiny, tmp_path):
    """keras.applications MobileNetV2 as a user takes it (softmax head, 52 Conv2D/Dense layers, 52 BNs),
    its SavedModel through INT8 -> Vela: every BN folds into its conv, every kernel and the model's
    input and output INT8, every operator on the NPU. (Its whole PCQAT path takes ~5 min on 2 cores; the
    ResNet above and the TF-op model of test_layer_coverage carry pruning, clustering and PCQAT.)"""
    model = mobilenet_v2()
    convs = [l.name for l in model.layers if type(l) in (L.Conv2D, L.Dense)]
    base = keras_io.save_model(model, str(tmp_path / "model"))
    spec = stages.DataSpec(tiny[(32, 32, 3)], feature_shape=(32, 32, 3))
    stages.to_tflite(base, spec, str(tmp_path / "t"), representative_samples=32)
    tflite = str(tmp_path / "t" / artifact_files.TFLITE_FILE)
    npu = stages.compile_npu(tflite, str(tmp_path / "npu"))["ethos-u55-128"]
    _assert_int8_io(tflite)
    kernels, all_int8 = _kernel_layers(tflite)
    assert all_int8 and len(kernels) == len(convs)  # no BN left as its own operator
    assert (npu["npu_op_pct"], npu["cpu_ops"]) == (100.0, 0)


def test_rescaling_normalization_dropout(tiny, tmp_path):
    stats, tflite, npu = _pcqat_path(preprocessing_model(), tiny[(28, 28, 1)], (28, 28, 1), tmp_path)
    expected = {t: {"scale": f"Rescaling is not in TFMOT's {registry} registry",
                    "norm": f"Normalization is not in TFMOT's {registry} registry"}
                for t, registry in (("prune", "pruning"), ("qat", "8-bit quantization"))}
    expected["cluster"] = {}  # no trainable weights: TFMOT's clustering passes them through
    assert stats[artifact_files.EXCLUDED_LAYERS] == expected
    _assert_int8_io(tflite)
    kernels, all_int8 = _kernel_layers(tflite)
    assert all_int8 and [l["layer"] for l in kernels] == ["conv", "head"], kernels
    assert all(l["sparsity"] >= 0.45 and l["max_unique_per_channel"] <= 8 for l in kernels)
    assert stats["preservation_failures"] == [] and npu["npu_op_pct"] == 100.0
    # The leaf and its report name them too (tmp_path/t: pcqat_stages' INT8 output, q: its QAT model).
    spec = stages.DataSpec(tiny[(28, 28, 1)])
    leaf_evaluation.evaluate_leaf("prune_cluster_pcqat", str(tmp_path / "t"), str(tmp_path / "q"), spec, str(tmp_path / "e"))
    run_report.write_report({"prune_cluster_pcqat": str(tmp_path / "e")}, str(tmp_path / "r"))
    with open(tmp_path / "r" / artifact_files.REPORT_FILE) as f:
        page = f.read()
    for technique, layers in expected.items():
        for layer, why in layers.items():
            assert (f'<td class="l">{technique}</td><td class="l">{layer}</td>'
                    f'<td class="l">{html.escape(why)}</td>') in page


@pytest.mark.parametrize("make,technique,message", [
    (user_resnet, "qat",
     f"qat: 2 layer(s) TFMOT cannot quantize (strict: true): bn_after_add ({BN_WHY}); bn_after_concat ({BN_WHY}). "
     "Exclude them with qat.exclude_layers, or drop strict to leave them out."),
    (preprocessing_model, "prune",
     "prune: 2 layer(s) TFMOT cannot prune (strict: true): scale (Rescaling is not in TFMOT's pruning registry); "
     "norm (Normalization is not in TFMOT's pruning registry). Exclude them with prune.exclude_layers, or drop "
     "strict to leave them out."),
])
def test_strict_fails_naming_every_unsupported_layer_before_fine_tuning(make, technique, message, tiny, tmp_path):
    base = keras_io.save_model(make(), str(tmp_path / "model"))
    stage = {"qat": stages.preserving_qat, "prune": stages.prune}[technique]
    with pytest.raises(layer_support.UnsupportedLayersError) as e:
        stage(base, stages.DataSpec(tiny[(28, 28, 1)]), str(tmp_path / "out"), strict=True)
    assert str(e.value) == message
    assert not os.path.exists(tmp_path / "out")  # failed before anything was fine-tuned or written


def test_a_kernel_that_feeds_a_relu_layer_keeps_its_quantizer_and_clusters_in_qat():
    """TFMOT's Conv2D/Dense -> ReLU transform gave the kernel layer a no-op config: no kernel quantizer,
    so PCQAT trained it freely and the ResNet above lost that layer's sparsity and clusters (found by
    this file; core/layer_support.kernels_before_relu). The kernel is quantized and clustered, and no
    fake-quant sits between it and its ReLU."""
    from collabopt.core.techniques import optimize
    i = keras.Input((8, 8, 1), name="image")
    x = L.Activation("relu", name="act")(L.Conv2D(4, 3, name="conv2")(L.ReLU(name="relu")(L.Conv2D(4, 3, name="conv")(i))))
    model = keras.Model(i, L.Dense(2, name="head")(L.Flatten(name="flat")(x)))
    assert layer_support.before_relu(model) == {"conv", "conv2"}
    for scheme, extra in (("qat", []), ("pcqat", ["cluster_centroids_tf", "ori_weights_vars_tf", "pulling_indices_tf"])):
        q, _ = optimize.quantize_model(model, scheme, per_channel_clusters=False)
        for name in ("quant_conv", "quant_conv2"):
            got = sorted(w.name.split("/")[-1].split(":")[0] for w in q.get_layer(name).weights)
            assert got == sorted(["kernel", "bias", "optimizer_step", "kernel_min", "kernel_max", *extra]), (scheme, got)
