"""Layer coverage, second round (issue 20): small kernels get no more clusters than they have
weights, functional TF ops (MobileNetV3's hard-swish, squeeze-excite) pass through every technique."""
import logging

import numpy as np
import pytest

from collabopt.core.techniques import cluster_counts, layer_support, optimize
from collabopt.core.tflite import convert, flatbuffer
from collabopt.core.tfenv import keras

L = keras.layers


def separable(shape=(16, 16, 1)):
    """A SeparableConv2D on one input channel: its pointwise kernel holds 8 weights (4 once pruned)."""
    i = keras.Input(shape)
    x = L.SeparableConv2D(8, 3, padding="same", name="sep1")(i)
    x = L.SeparableConv2D(8, 3, padding="same", name="sep2")(x)
    return keras.Model(i, L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x)))


def hard_swish_se(shape=(16, 16, 3)):
    """MobileNetV3's blocks in small: hard-swish and squeeze-excite as TFOpLambda (`x + 3.0`, `* (1/6)`)."""
    def hard_sigmoid(x):
        return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    i = keras.Input(shape)
    x = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(i))
    x = L.Multiply()([x, hard_sigmoid(x)])
    s = L.Conv2D(16, 1, name="se_up")(L.ReLU()(L.Conv2D(8, 1, name="se_down")(L.GlobalAveragePooling2D(keepdims=True)(x))))
    x = L.Multiply()([x, hard_sigmoid(s)])
    x = L.BatchNormalization()(L.Conv2D(32, 1, use_bias=False, name="expand")(x))
    x = L.GlobalAveragePooling2D()(L.Multiply()([x, hard_sigmoid(x)]))
    return keras.Model(i, L.Dense(10, activation="softmax", name="head")(x))


def _data(shape, n=64, classes=4, seed=0):
    r = np.random.default_rng(seed)
    return r.random((n, *shape), dtype=np.float32), r.integers(0, classes, n)


def test_cluster_counts_never_exceed_the_nonzero_weights_of_a_kernel():
    m = separable()
    pw = m.get_layer("sep1").pointwise_kernel
    pw.assign(np.array([0.3, -0.2, 0, 0, 0.1, 0, 0.4, 0], np.float32).reshape(1, 1, 1, 8))  # 3 positive, 1 negative
    counts, clamped, dropped = cluster_counts.plan(m, 16, preserve_sparsity=True, per_channel=False)
    # 4 non-zero weights: the zero centroid + 3 on the positive side + 1 on the negative side.
    assert counts == {"sep1": 5, "sep2": 16, "head": 16}
    assert clamped == {"sep1": "5 clusters, not 16: its kernel has too few non-zero weights"} and dropped == {}
    pw.assign(np.array([0.3, 0, 0, 0, 0, 0, 0, 0], np.float32).reshape(1, 1, 1, 8))
    counts, clamped, dropped = cluster_counts.plan(m, 16, preserve_sparsity=True, per_channel=False)
    assert counts == {"sep2": 16, "head": 16}
    assert dropped == {"sep1": "too few non-zero weights for 3 clusters: left out of clustering"}
    assert cluster_counts.plan(m, 16, preserve_sparsity=False, per_channel=False)[1] == {
        "sep1": "8 clusters, not 16: its kernel has too few weights"}
    # TFMOT skips a Conv2D with no more weights than clusters: a 1x1 conv of 2x4 gets 7, not 8.
    i = keras.Input((4, 4, 2))
    small = keras.Model(i, L.Conv2D(4, 1, name="pw")(i))
    assert cluster_counts.plan(small, 8, preserve_sparsity=False, per_channel=False)[0] == {"pw": 7}


def test_a_pruned_separable_conv_clusters_with_its_count_clamped_and_named(caplog):
    """Was: TFMOT's k-means++ crash `Expected num_to_sample <= points.rows(). 11 vs 3`, no layer named."""
    x, y = _data((16, 16, 1))
    p = optimize.prune(separable(), x, y, target_sparsity=0.5, epochs=1)
    with caplog.at_level(logging.INFO, logger="collabopt"):
        c = optimize.cluster(p, x, y, number_of_clusters=16, epochs=1)
    assert "[cluster] sep1: 5 clusters, not 16: its kernel has too few non-zero weights" in caplog.messages
    pw = c.get_layer("sep1").pointwise_kernel.numpy()
    assert np.mean(pw == 0) == 0.5 and len(np.unique(pw)) <= 5
    assert len(np.unique(c.get_layer("sep2").pointwise_kernel.numpy())) <= 16


def _pcqat_int8(model, x, y, clusters=8):
    """prune -> cluster -> PCQAT -> INT8 with every technique's plan, as the stages run it."""
    p = optimize.prune(model, x, y, target_sparsity=0.5, epochs=1, left_out=layer_support.plan(model, "prune"))
    c = optimize.cluster(p, x, y, number_of_clusters=clusters, epochs=1, left_out=layer_support.plan(p, "cluster"))
    q, scheme = optimize.preserving_qat(c, x, y, epochs=1, left_out=layer_support.plan(c, "qat"))
    assert scheme == "pcqat"
    return flatbuffer.summarize(convert.to_int8(q, convert.representative(x, 16)))


def _tf_ops(model):
    return {l.name for l in model.layers if type(l).__name__ == "TFOpLambda"}


@pytest.mark.slow  # ~55 s: three fine-tunings of a 30-layer graph
def test_tf_ops_pass_through_prune_cluster_and_pcqat():
    """Was: the clusterers crashed after their epoch (`'list' object has no attribute 'dtype'`) and
    every QAT path refused the model. The ops are named before fine-tuning, the leaf is full INT8."""
    m = hard_swish_se()
    ops = _tf_ops(m)
    assert len(ops) == 6
    for technique in layer_support.TECHNIQUES:
        left_out = layer_support.plan(m, technique)
        assert ops <= set(left_out)
        # Keras names the layer tf.__operators__.add, or _1, _2 ... when the process built one before
        add = min(n for n in ops if n.startswith("tf.__operators__.add"))
        assert left_out[add] == "TFOpLambda __operators__.add has no weights: passed through as it is"
    stats = _pcqat_int8(m, *_data((16, 16, 3), classes=10))
    judged = [l for l in stats["layers"] if l["layer"] in ("se_up", "expand", "head")]
    assert len(judged) == 3 and all(l["dtype"] == "int8" for l in stats["layers"])
    assert all(l["sparsity"] >= 0.45 and l["max_unique_per_channel"] <= 8 for l in judged), judged


def conv1d_separable(shape=(28, 28, 1)):
    """A keyword-spotter-like mix: a SeparableConv2D, then a Conv1D + BN + ReLU over the flattened grid."""
    i = keras.Input(shape)
    x = L.SeparableConv2D(16, 3, strides=2, name="sep")(i)
    x = L.Reshape((169, 16))(x)
    x = L.ReLU()(L.BatchNormalization()(L.Conv1D(32, 3, strides=2, use_bias=False, name="c1d")(x)))
    return keras.Model(i, L.Dense(10, name="head")(L.GlobalAveragePooling1D()(x)))


def test_the_rewrite_computes_the_same_and_converts_to_the_same_ops():
    from collabopt.core.techniques import rewrite
    m = conv1d_separable()
    r, done, skipped = rewrite.rewrite(m)  # checks the outputs match (RewriteError otherwise)
    bn, relu = (l.name for l in m.layers if type(l).__name__ in ("BatchNormalization", "ReLU"))
    assert done == {"sep": "SeparableConv2D -> DepthwiseConv2D sep_dw + Conv2D sep",
                    "c1d": f"Conv1D -> TFOpLambda c1d_expand + Conv2D c1d + BatchNormalization {bn}"
                           f" + ReLU {relu} + TFOpLambda c1d_squeeze"} and skipped == {}
    assert layer_support.unsupported(r, "qat").keys() == {"c1d_expand", "c1d_squeeze"}  # TF ops only
    assert rewrite.rewrite(r)[0] is r  # nothing left to rewrite


def test_conv1d_and_separable_conv_keep_zeros_and_clusters_through_pcqat(tmp_path):
    """Was: QAT left Conv1D and SeparableConv2D out, fine-tuned them freely, and PCQAT came out with
    21-26 values per channel instead of the clusters. Judged on the flatbuffer."""
    from collabopt.core import artifact_files, stages
    from collabopt.core.model import keras_io
    from collabopt.tests.helpers import fashion_mnist_examples
    examples = fashion_mnist_examples(str(tmp_path / "ex"), train_limit=256, eval_limit=64)
    keras_io.save_model(conv1d_separable(), str(tmp_path / "base" / keras_io.SERVING_DIR))
    spec, fit = stages.DataSpec(examples), stages.FitSpec(epochs=1, batch_size=64)
    stages.prune(str(tmp_path / "base"), spec, str(tmp_path / "p"), target_sparsity=0.5, fit=fit)
    stages.cluster(str(tmp_path / "p"), spec, str(tmp_path / "c"), number_of_clusters=8, fit=fit)
    stages.preserving_qat(str(tmp_path / "c"), spec, str(tmp_path / "q"), fit=fit)
    stats = stages.to_tflite(str(tmp_path / "q"), spec, str(tmp_path / "t"), representative_samples=32)
    assert not {"sep", "c1d"} & set(stats[artifact_files.EXCLUDED_LAYERS]["qat"])
    assert stats["preservation_failures"] == []
    layers = {l["layer"]: l for l in stats["layers"]}
    assert layers["sep_dw"]["op"] == "DEPTHWISE_CONV_2D" and layers["c1d"]["op"] == "CONV_2D"
    for name in ("sep", "c1d", "head"):
        assert layers[name]["dtype"] == "int8" and layers[name]["sparsity"] >= 0.45, layers[name]
        assert layers[name]["max_unique_per_channel"] <= 8, layers[name]


def hard_swish_se_1x1(shape=(2, 2, 3)):
    """MobileNetV3Small's last blocks at a 32x32 input: hard-swish and squeeze-excite on a 1x1 map."""
    def hard_sigmoid(x):
        return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    i = keras.Input(shape)
    x = L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(i))
    x = L.Multiply(name="stem_hswish")([x, hard_sigmoid(x)])
    x = L.BatchNormalization()(L.DepthwiseConv2D(5, padding="same", use_bias=False, name="dw")(x))
    x = L.Multiply(name="dw_hswish")([x, hard_sigmoid(x)])
    s = L.Conv2D(16, 1)(L.ReLU()(L.Conv2D(8, 1)(L.GlobalAveragePooling2D(keepdims=True)(x))))
    x = L.Multiply(name="se_mul")([x, hard_sigmoid(s)])
    x = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(x))
    return keras.Model(i, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(x)))


@pytest.mark.slow  # 20-40 s: a QAT fine-tuning and an INT8 conversion of a 40-layer graph
def test_qat_quantizes_multiply_outputs_so_a_1x1_squeeze_excite_converts_full_int8(tmp_path):
    """Was: QAT left Multiply out (no TFMOT config) and MobileNetV3Small's QAT leaves held a float MUL
    (DEQUANTIZE -> MUL -> QUANTIZE) where a hard-swish fed a squeeze-excite on a 1x1 map: the NPU
    node refused them."""
    from collabopt.core.npu import vela
    m = hard_swish_se_1x1()
    left_out = layer_support.plan(m, "qat")
    assert not {"stem_hswish", "dw_hswish", "se_mul"} & set(left_out)
    x, y = _data((2, 2, 3))
    q, _ = optimize.preserving_qat(m, x, y, scheme="qat", epochs=1, batch_size=16, left_out=left_out)
    path = tmp_path / "q.tflite"
    path.write_bytes(convert.to_int8(q, convert.representative(x, 16)))
    vela.check_int8(str(path))  # NotInt8Error naming the float tensors otherwise
