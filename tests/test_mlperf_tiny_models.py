"""The MLPerf Tiny reference architectures (benchmarks/mlperf_tiny_models.py, issue 11): published
shapes, parameter counts, what TFMOT can handle per technique, and full INT8 -> Vela on the U55-128
with every operator on the NPU. Untrained: no fitting anywhere."""


import numpy as np
import pytest

from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES, ic_resnet8
from collabopt.core.tflite import convert
from collabopt.core.techniques import layer_support
from collabopt.core.tflite.flatbuffer import interpreter
from collabopt.core.tfenv import keras
from collabopt.core.npu.vela import compile_for_npu

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

# Parameter counts worked out by hand from the reference definitions (every conv/dense has a bias;
# BN has 4 x channels, 2 x channels of them non-trainable), then checked against Keras:
PARAMS = {
    # 10x4x1x64+64 = 2,624; 4 blocks x (dw 9x64+64 + pw 64x64+64 = 4,800); 9 BN x 256; dense 64x12+12.
    # The 64-wide, 4-block layout of Hello Edge's DS-CNN-S (its M and L variants are wider).
    "kws": 24_908,
    # conv 3x3x3x8+8; 13 dw/pw blocks 8 -> 16 -> 32 -> 32 -> 64 -> 64 -> 128 (x6) -> 256 -> 256; 27 BN; 256x2+2.
    "vww": 221_794,
    # 16/32/64 filters: 3x3 convs, two 1x1 shortcuts (32x16+32, 64x32+64), 7 BN, dense 64x10+10.
    "ic": 78_666,
    # 640 -> 128 x4 -> 8 -> 128 x4 -> 640 dense (+ bias), 9 BN.
    "ad": 269_992,
}
TRAINABLE = {"kws": 24_908 - 2 * 64 * 9, "vww": 221_794 - 5_472, "ic": 78_666 - 480, "ad": 269_992 - 2_064}
# Every layer type in the four models is in TFMOT's prune, cluster and 8-bit registries, and every
# BatchNormalization follows the Conv2D/DepthwiseConv2D/Dense it folds into, ResNet-8's included:
# its BNs sit on the residual branch before the Add, the shortcut's 1x1 conv has none.
UNSUPPORTED = {name: {t: {} for t in layer_support.TECHNIQUES} for name in ARCHITECTURES}
# TFLite operators after full-INT8 conversion: every BN folded, every ReLU fused, Flatten a RESHAPE.
OPS = {
    "kws": {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
    "vww": {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1,
            "SOFTMAX": 1},
    "ic": {"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
    "ad": {"FULLY_CONNECTED": 10},
}


@pytest.fixture(scope="module")
def built():
    keras.utils.set_random_seed(0)
    return {name: arch.fn() for name, arch in ARCHITECTURES.items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_published_shapes_and_params(built, name):
    arch, m = ARCHITECTURES[name], built[name]
    assert m.input_shape == (None, *arch.input_shape)
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert (m.count_params(), trainable) == (PARAMS[name], TRAINABLE[name])
    assert not m.losses  # regularizers dropped by default
    if arch.task == "classification":
        assert m.output_shape == (None, arch.num_classes)
        assert m.layers[-1].get_config()["activation"] == "softmax"
    else:
        assert (arch.task, m.output_shape, m.layers[-1].get_config()["activation"]) == (
            "autoencoder", (None, *arch.input_shape), "linear")


def test_published_details():
    kws, vww, ic = (ARCHITECTURES[n].fn() for n in ("kws", "vww", "ic"))
    first = kws.get_layer("conv_1")
    assert (first.kernel_size, first.strides, first.filters) == ((10, 4), (2, 2), 64)
    assert kws.get_layer("avg_pool").pool_size == (24, 5)  # int(49/2) rows of a 25-row map, as published
    assert vww.get_layer("block_13_pw").output_shape == (None, 3, 3, 256)
    assert [type(ic.get_layer(n)).__name__ for n in ("stack_2_conv_b_bn", "stack_2_add", "stack_2_relu")] == [
        "BatchNormalization", "Add", "Activation"]
    large = ic_resnet8(filters=26)  # the reference's current conv_filters default, "200k params"
    assert large.count_params() == 205_306
    assert len(ic_resnet8(weight_decay=1e-4).losses) == 9  # the published L2: 9 convolutions, not the head


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_layer_support(built, name):
    got = {t: layer_support.unsupported(built[name], t) for t in layer_support.TECHNIQUES}
    assert got == UNSUPPORTED[name]
    if name == "ic":  # the residual model: TFMOT's own QAT wrapping accepts it whole
        import tensorflow_model_optimization as tfmot
        q = tfmot.quantization.keras.quantize_apply(layer_support.quantize_annotated(built[name], {}))
        assert q.output_shape == (None, 10)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_int8_all_on_npu(built, name, tmp_path):
    shape = ARCHITECTURES[name].input_shape
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
    path = tmp_path / f"{name}_int8.tflite"
    path.write_bytes(convert.to_int8(built[name], convert.representative(x)))
    interp = interpreter(model_path=path)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    ops = [o["op_name"] for o in interp._get_ops_details()]
    assert {op: ops.count(op) for op in ops} == OPS[name]
    r = compile_for_npu(path, tmp_path / "vela", "ethos-u55-128")
    assert (r["npu_op_pct"], r["cpu_ops"]) == (100.0, 0), r


# ---------------------------------------------------------------- benchmarks/mlperf_tiny.py's legs, on tiny data

@pytest.fixture(scope="module")
def tiny_examples(tmp_path_factory):
    """192 train / 32 eval Fashion-MNIST images per architecture, shaped as the benchmark prepares them
    (192: three fine-tuning steps of 64, enough for the pruning schedule to reach its target)."""
    from collabopt.benchmarks import mlperf_tiny
    return {name: mlperf_tiny.prepare(name, str(tmp_path_factory.mktemp(name)), 192, 32) for name in ("ic", "ad")}


# ResNet-8 (Add blocks): KWS's DS-CNN is the demo's model (the tree tests) and VWW's depthwise-separable
# MobileNet v1 is MobileNetV2's layers (test_user_models); benchmarks/mlperf_tiny.py runs all four.
@pytest.mark.parametrize("name", ["ic"])
def test_a_classifier_through_the_pcqat_path(name, tiny_examples, tmp_path):
    """prune -> sparsity-preserving cluster -> PCQAT -> INT8 -> Vela on the benchmark's data: every layer
    handled (nothing left out), the flatbuffer int8, sparse and clustered, every operator on the NPU."""
    from collabopt.benchmarks import mlperf_tiny
    from collabopt.core.tflite import flatbuffer
    from collabopt.core.data import examples_io
    from collabopt.core.model import keras_io
    from collabopt.core import stages
    from collabopt.tests.helpers import pcqat_stages
    shape = ARCHITECTURES[name].input_shape
    spec = stages.DataSpec(tiny_examples[name], feature_shape=shape)
    x, y = examples_io.read_examples(spec.examples_uri, "train", feature_shape=shape)
    assert x.shape == (192, *shape) and 0 <= x.min() < x.max() <= 1
    assert set(y.tolist()) == ({0, 1} if name == "vww" else set(range(10)))
    base = keras_io.save_model(mlperf_tiny.build(name), str(tmp_path / "model"))
    qat, stats, tflite, npu = pcqat_stages(base, spec, tmp_path / "run")
    assert qat["scheme"] == "pcqat" and stats["excluded_layers"] == {"prune": {}, "cluster": {}, "qat": {}}
    with open(tflite, "rb") as f:
        layers = flatbuffer.layer_stats(f.read())
    assert all(l["dtype"] == "int8" for l in layers)
    kernels = [l for l in layers if l["op"] != "DEPTHWISE_CONV_2D"]
    assert kernels and all(l["sparsity"] >= 0.45 and l["max_unique_per_channel"] <= 8 for l in kernels), \
        [(l["layer"], l["sparsity"], l["max_unique_per_channel"]) for l in kernels]
    assert stats["preservation_failures"] == [] and (npu["npu_op_pct"], npu["cpu_ops"]) == (100.0, 0)


def test_autoencoder_through_the_pcqat_path_with_its_metric(tiny_examples, tmp_path):
    """AD's leg as the benchmark runs it: normal-class-only train split, fine-tuned on its reconstruction
    MSE through prune -> cluster -> PCQAT -> INT8 -> Vela, the leaf evaluated (Beam) by the AUC of its
    reconstruction error, and the script's INT8 MSE equal to the one the tree's mse metric computes."""
    from collabopt.benchmarks import mlperf_tiny
    from collabopt.core.tflite import flatbuffer
    from collabopt.core.data import examples_io
    from collabopt.core.model import keras_io
    from collabopt.core.evaluation import leaf_evaluation
    from collabopt.core import stages
    from collabopt.core.model.train import TrainingSpec
    from collabopt.tests.helpers import pcqat_stages
    spec = stages.DataSpec(tiny_examples["ad"], feature_shape=(640,), target="features")
    (x, y), (xe, ye) = (examples_io.read_examples(spec.examples_uri, s, feature_shape=(640,)) for s in ("train", "eval"))
    assert x.shape == (192, 640) and set(y.tolist()) == {0} and set(ye.tolist()) == {0, 1}
    auc = TrainingSpec(**{k: v for k, v in mlperf_tiny.AD_TRAINING.items() if k != "target"})
    base = keras_io.save_model(mlperf_tiny.build("ad"), str(tmp_path / "model"))
    qat, stats, tflite, npu = pcqat_stages(base, spec, tmp_path / "run", training=auc)
    assert qat["scheme"] == "pcqat" and qat["eval_metric"] == "auc" and "accuracy" not in qat
    assert all(l["dtype"] == "int8" for l in stats["layers"]) and (npu["npu_op_pct"], npu["cpu_ops"]) == (100.0, 0)
    leaf = leaf_evaluation.evaluate_leaf("prune_cluster_pcqat", tmp_path / "run" / "t", tmp_path / "run" / "q", spec,
                                str(tmp_path / "leaf"), training=auc)
    assert leaf["eval_metric"] == "auc" and 0 <= leaf["int8_metric"] <= 1 and leaf["eval_examples"] == 32
    with open(tflite, "rb") as f:
        recon = flatbuffer.int8_outputs(f.read(), xe)
    err = np.mean((recon - xe) ** 2, axis=1)
    assert mlperf_tiny.leaf_mse(tflite, spec) == pytest.approx(err[ye == 0].mean(), rel=1e-6)
    mse = leaf_evaluation.evaluate_leaf("prune_cluster_pcqat", tmp_path / "run" / "t", tmp_path / "run" / "q", spec,
                               str(tmp_path / "leaf_mse"), training=TrainingSpec(loss="mse", eval_metric="mse"))
    assert mse["int8_metric"] == pytest.approx(err.mean(), rel=1e-5)
