"""Core unit tests: model description, scheme choice, shared centroids, preservation check."""
import numpy as np
import pytest

from collabopt.core.tflite import flatbuffer, convert
from collabopt.core.evaluation import gates
from collabopt.core.techniques import optimize
from collabopt.core.model import baseline
from collabopt.core.data.examples_io import load_fashion_mnist
from collabopt.core.tfenv import keras


@pytest.fixture(scope="module")
def xy():
    x, y = load_fashion_mnist(train_limit=300, eval_limit=10)["train"]
    return x[..., None].astype("float32") / 255.0, y


@pytest.fixture(scope="module")
def clustered(xy):
    """A pruned (50%) + per-tensor clustered (8) DS-CNN, trained only briefly."""
    x, y = xy
    m = baseline.ds_cnn(width=32, blocks=2)
    p = optimize.prune(m, x, y, target_sparsity=0.5, schedule="constant", frequency=1, epochs=1)
    return optimize.cluster(p, x, y, number_of_clusters=8, epochs=1)


def test_a_constant_schedule_prunes_from_the_first_step(xy):
    """5 steps, pruning every 100: the mask is set at step 1 and kept (a resumed search rung's case)."""
    x, y = xy
    p = optimize.prune(baseline.ds_cnn(width=16, blocks=1), x, y, target_sparsity=0.5, schedule="constant", epochs=1)
    again = optimize.prune(p, x, y, target_sparsity=0.5, schedule="constant", epochs=1)
    for m in (p, again):
        kernels = [layer.get_weights()[0] for layer in m.layers
                   if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
                   and not isinstance(layer, keras.layers.DepthwiseConv2D)]  # TFMOT leaves depthwise kernels
        assert kernels and all(abs(np.mean(w == 0) - 0.5) < 0.01 for w in kernels), [np.mean(w == 0) for w in kernels]


def test_describe_and_scheme(xy, clustered):
    dense = baseline.ds_cnn(width=32, blocks=2)
    assert optimize.describe(dense) == {"sparse": False, "clustered": False, "per_channel": False}
    assert optimize.pick_scheme(dense) == "qat"
    assert optimize.describe(clustered) == {"sparse": True, "clustered": True, "per_channel": False}
    assert optimize.pick_scheme(clustered) == "pcqat"


def _centroid_shapes(qat_model):
    return {w.name.split("/")[0]: tuple(w.shape) for w in qat_model.weights if "cluster_centroids_tf" in w.name}


def test_shared_centroids_keep_one_set_per_tensor():
    """TFMOT's default gives each channel of a per-tensor-clustered Conv2D its own centroids as soon
    as every channel holds the same number of distinct values; collabopt keeps one set per tensor."""
    inp = keras.Input((4, 4, 16))
    m = keras.Model(inp, keras.layers.Conv2D(16, 1, use_bias=False, name="pw")(inp))
    centroids = np.array([-0.3, -0.2, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3], np.float32)
    # every output channel holds all 8 centroids (twice each): per-tensor clustering, 8 clusters
    kernel = np.stack([np.random.default_rng(c).permutation(np.repeat(centroids, 2)) for c in range(16)], -1)
    m.get_layer("pw").set_weights([kernel.reshape(1, 1, 16, 16)])
    assert optimize.describe(m)["per_channel"] is False
    shared, scheme = optimize.quantize_model(m, "cqat")
    own, _ = optimize.quantize_model(m, "cqat", per_channel_clusters=True)
    assert scheme == "cqat"
    assert list(_centroid_shapes(shared).values()) == [(8,)]       # one set for the tensor
    assert list(_centroid_shapes(own).values()) == [(16, 8)]       # TFMOT default: per channel


def test_shared_ranges_give_one_int8_code_per_centroid():
    """Channels holding different centroid subsets get different per-channel scales; with one
    range per kernel every centroid has one int8 code in the whole tensor."""
    inp = keras.Input((4, 4, 16))
    x = keras.layers.Conv2D(16, 1, use_bias=False, name="pw")(inp)
    m = keras.Model(inp, keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D()(x)))
    centroids = np.array([-0.3, -0.2, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3], np.float32)
    rng = np.random.default_rng(0)
    # odd channels lack the extreme centroids, so their own max differs from the tensor's
    cols = [rng.permutation(np.resize(centroids if c % 2 == 0 else centroids[1:-1], 16)) for c in range(16)]
    m.get_layer("pw").set_weights([np.stack(cols, -1).reshape(1, 1, 16, 16)])
    xs, ys = rng.random((64, 4, 4, 16), np.float32), rng.integers(0, 4, 64)
    rep = convert.representative(xs, 16)

    def codes(per_channel):
        q, _ = optimize.preserving_qat(m, xs, ys, scheme="cqat", epochs=1, per_channel_clusters=per_channel)
        pw = next(l for l in flatbuffer.layer_stats(convert.to_int8(q, rep)) if l["layer"] == "pw")
        return pw["unique_per_tensor"], pw["max_unique_per_channel"]

    assert optimize.per_tensor_clustered(m) == ["pw"]
    shared, tfmot_default = codes(None), codes(True)
    assert shared[0] <= 8 and shared[1] <= 8
    assert tfmot_default[0] > 8  # the same centroids, several int8 codes each


@pytest.mark.parametrize("m_by_n,expected", [((2, 4), 0.5), ((1, 4), 0.25)])
def test_m_by_n_sparsity_in_the_flatbuffer(xy, m_by_n, expected):
    x, y = xy
    p = optimize.prune(baseline.ds_cnn(width=32, blocks=1), x, y, m_by_n=m_by_n, epochs=1)
    layers = flatbuffer.layer_stats(convert.to_int8(p, convert.representative(x, 20)))
    pw = next(l for l in layers if l["layer"] == "pw_1")
    assert pw["sparsity"] == pytest.approx(expected, abs=0.01)


def test_bad_parameters():
    m = baseline.ds_cnn(width=8, blocks=1)
    x, y = np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int64)
    # The config schema's rules and messages, also when core is called directly (benchmarks, scripts).
    with pytest.raises(ValueError, match=r"^prune.target_sparsity: 1 is greater than or equal to the maximum of 1$"):
        optimize.prune(m, x, y, target_sparsity=1)
    with pytest.raises(ValueError, match=r"^prune.m_by_n: \[4, 4\] must be \[M, N\] with 0 < M < N"):
        optimize.prune(m, x, y, m_by_n=(4, 4))
    with pytest.raises(ValueError, match=r"^cluster.centroid_init: 'median' is not one of"):
        optimize.cluster(m, x, y, centroid_init="median")
    with pytest.raises(ValueError, match=r"^qat.scheme: 'int4' is not one of \['auto', 'qat'"):
        optimize.quantize_model(m, "int4")


def test_preservation_names_broken_layers():
    layers = [
        {"op": "CONV_2D", "layer": "pw_1", "sparsity": 0.50, "max_unique_per_channel": 8},
        {"op": "CONV_2D", "layer": "pw_2", "sparsity": 0.31, "max_unique_per_channel": 8},
        {"op": "FULLY_CONNECTED", "layer": "logits", "sparsity": 0.5, "max_unique_per_channel": 40},
        {"op": "DEPTHWISE_CONV_2D", "layer": "dw_1", "sparsity": 0.0, "max_unique_per_channel": 9},
    ]
    f = gates.preservation(layers, {"target_sparsity": 0.5, "number_of_clusters": 8})
    assert f == ["pw_2: sparsity 0.310 < 0.480", "logits: 40 distinct values in an output channel > 8 clusters"]
    assert gates.preservation(layers, {}) == []


def test_artifact_types_resolve_as_kfp_needs():
    """KFP imports custom artifact types as `<module>.<Class>` from their TYPE_NAME."""
    import importlib
    import re
    for name in ("TFLiteModel", "NPUModel", "LeafEvaluation", "OptimizationReport"):
        module, cls = getattr(importlib.import_module("collabopt"), name).TYPE_NAME.split(".")
        assert re.fullmatch(r"[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}", f"{module}.{cls}")
        assert getattr(importlib.import_module(module), cls).__name__ == name
