"""Channel surgery: a thinning that drops nothing reproduces the original; one that drops channels
computes what the original computes with those inputs zeroed; groups follow the dependencies."""
import numpy as np
import pytest

from collabopt.core.tfenv import keras
from collabopt.core.techniques.channels.graph import ChannelGraph
from collabopt.core.techniques.channels import widths
from collabopt.core.techniques.channels.surgery import plan, thin
from collabopt.tests import channel_zoo as zoo

OWNER_KERNELS = ("Conv1D", "Conv2D", "Dense", "SeparableConv2D")


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2, v.shape)])
    return model


def _x(model, n=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *model.input_shape[1:])).astype("float32")


def _thinnable(graph):
    return {r: g for r, g in graph.groups().items() if not g.fixed and g.owners}


def _keep_all(graph):
    return {g.owners[0]: list(range(g.size)) for g in _thinnable(graph).values()}


def _keep_some(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {g.owners[0]: sorted(rng.choice(g.size, max(1, g.size // 2), replace=False))
            for g in _thinnable(graph).values()}


def _zeroed(model, layers):
    """The original with every kept-out input row of a weighted layer set to 0: what the thin model computes."""
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    for layer in ref.layers:
        cls = type(layer).__name__
        if cls in OWNER_KERNELS and layer.name in layers:
            in_pos = layers[layer.name][0]
            w = layer.get_weights()
            k = 1 if cls == "SeparableConv2D" else 0
            mask = np.zeros(w[k].shape[-2], bool)
            mask[in_pos] = True
            w[k][..., ~mask, :] = 0
            if cls == "SeparableConv2D":
                w[0][..., ~mask, :] = 0
            layer.set_weights(w)
    return ref


BUILDERS = [zoo.chain, zoo.residual, zoo.concat, zoo.separable, zoo.squeeze_excite, zoo.sequential]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_keep_all_reproduces_exactly(build):
    model = _randomize_bn(build())
    graph = ChannelGraph(model)
    assert _thinnable(graph), "the model should have a thinnable group"
    new, left = thin(model, _keep_all(graph), graph)
    assert left == {}
    x = _x(model)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_thin_equals_original_with_dropped_inputs_zeroed(build):
    model = _randomize_bn(build())
    graph = ChannelGraph(model)
    keep = _keep_some(graph)
    new, left = thin(model, keep, graph)
    assert left == {}
    _, _, layers, _ = plan(model, keep, graph)
    for name, idx in keep.items():  # every kept set is what the new layer has
        assert new.get_layer(name).output_shape[-1] == len(idx)
    assert new.count_params() < model.count_params()
    x = _x(model)
    np.testing.assert_allclose(new(x).numpy(), _zeroed(model, layers)(x).numpy(), atol=1e-5, rtol=1e-5)


def test_groups_follow_dependencies():
    g = ChannelGraph(zoo.residual()).groups()
    trunk = [grp for grp in g.values() if "stem" in grp.owners][0]
    assert sorted(trunk.owners) == ["b0_c2", "b1_c2", "stem"] and trunk.fixed is None
    se = ChannelGraph(zoo.squeeze_excite()).groups()
    trunk = [grp for grp in se.values() if "trunk" in grp.owners][0]
    assert sorted(trunk.owners) == ["se2_fc2", "se_expand", "trunk"]  # SE outputs follow the trunk
    assert [grp for grp in se.values() if "fc" in grp.owners][0].fixed == "model output"


def test_names_what_it_leaves_and_rejects_bad_keeps():
    model = zoo.residual()
    _, left = thin(model, {"fc": [0, 1]})
    assert left == {"fc": "model output"}
    with pytest.raises(ValueError, match="one channel group"):
        thin(model, {"stem": [0, 1], "b0_c2": [2, 3]})
    with pytest.raises(ValueError, match="no layer"):
        thin(model, {"nope": [0]})
    new, left = thin(model, {"stem_bn": list(range(8))})  # a BN names its producer's group
    assert new.get_layer("b1_c2").output_shape[-1] == 8 and left == {}


def test_unknown_layers_stay_full_width():
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="a")(inp)
    x = L.Permute((3, 1, 2), name="perm")(x)
    x = L.Flatten(name="flat")(x)
    model = keras.Model(inp, L.Dense(2, name="fc")(x))
    _, left = thin(model, {"a": [0, 1]})
    assert "perm" in left["a"]


@pytest.mark.parametrize("app", ["MobileNetV2", "MobileNetV3Small"])
def test_keras_applications(app):
    kw = dict(alpha=0.35) if app == "MobileNetV2" else {}
    model = getattr(keras.applications, app)(input_shape=(32, 32, 3), weights=None, classes=10, **kw)
    model = _randomize_bn(model)
    graph = ChannelGraph(model)
    groups = _thinnable(graph)
    assert len(groups) >= 10
    x = _x(model, n=2)
    new, left = thin(model, _keep_all(graph), graph)
    assert left == {}
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-6, rtol=0)
    keep = _keep_some(graph)
    new, left = thin(model, keep, graph)
    assert left == {} and new.count_params() < 0.8 * model.count_params()
    _, _, layers, _ = plan(model, keep, graph)
    np.testing.assert_allclose(new(x).numpy(), _zeroed(model, layers)(x).numpy(), atol=1e-5, rtol=1e-4)




def _fake_measure(model, graph):
    """Cycles = sum over layers of product of the widths they touch (a MAC-like count)."""
    dims = widths.layer_dims(graph)
    size = {r: g.size for r, g in graph.groups().items()}

    def measure(keep):
        w = dict(size)
        for name, idx in keep.items():
            w[graph.group_of(name)] = len(idx)
        per = {layer: float(np.prod([w[r] for r in roots])) for layer, roots in dims.items()}
        return sum(per.values()), per
    return measure


def test_step_rounds_to_granularity():
    assert widths._step(64, 8) == 8 and widths._step(61, 8) == 5 and widths._step(8, 8) == 0
    assert widths._step(138, 16) == 10


def test_importance_uses_bn_scale_after_a_conv():
    model = zoo.residual()
    graph = ChannelGraph(model)
    bn = model.get_layer("stem_bn")
    g = np.linspace(0.1, 2.0, 16)
    bn.set_weights([g, *bn.get_weights()[1:]])
    scores = widths.importance(model, graph, "bn")
    trunk = graph.group_of("stem")
    assert np.argmax(scores[trunk]) == 15 or np.corrcoef(scores[trunk], g)[0, 1] > 0.3
    assert set(scores) == {graph.group_of(n) for n in ("stem", "b0_c1", "b1_c1")}


def test_choose_meets_a_cycle_target_with_aligned_widths():
    model = zoo.separable()
    graph = ChannelGraph(model)
    res = widths.choose(model, _fake_measure(model, graph), 8, target_cycles=0.6, graph=graph, min_keep=0.25)
    assert res["met"] and res["cycles"] <= 0.6 * res["baseline_cycles"]
    for r, w in res["widths"].items():
        assert w == res["sizes"][r] or w % 8 == 0
    scores = widths.importance(model, graph)
    for name, idx in res["keep"].items():  # the kept channels are the most important ones
        s = scores[graph.group_of(name)]
        dropped = np.setdiff1d(np.arange(len(s)), idx)
        assert s[idx].min() >= s[dropped].max()


def test_choose_keep_ratio():
    model = zoo.separable()
    graph = ChannelGraph(model)
    res = widths.choose(model, _fake_measure(model, graph), 8, keep_ratio=0.6, graph=graph)
    assert res["met"] and sum(res["widths"].values()) <= 0.6 * sum(res["sizes"].values())
    assert all(w % 8 == 0 for w in res["widths"].values())
    model = zoo.residual()  # 16 + 8 + 8 channels, none below one block of 8: 0.6 is out of reach
    graph = ChannelGraph(model)
    res = widths.choose(model, _fake_measure(model, graph), 8, keep_ratio=0.6, graph=graph)
    assert not res["met"] and res["widths"] == {"stem": 8, "b0_c1": 8, "b1_c1": 8}
