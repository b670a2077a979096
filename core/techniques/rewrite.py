"""Rewrite the layers TFMOT handles only in part into their exact Conv2D / DepthwiseConv2D equivalent,
before any technique runs.

TFMOT prunes and clusters Conv1D and SeparableConv2D, but its 8-bit QAT registry has neither (and no
preserving config for them): QAT left them out, trained them freely and lost their zeros and clusters.
The TFLite converter turns them into CONV_2D / DEPTHWISE_CONV_2D anyway, so we make that split in Keras
first: every technique, BatchNormalization folding and the flatbuffer analysis then see the layers they
know, and the INT8 ops are the same kinds as converting the original.

- Conv1D            -> tf.expand_dims (axis 1) + Conv2D (1 x k) + tf.squeeze (axis 1)
- DepthwiseConv1D   -> expand_dims + DepthwiseConv2D (1 x k) + squeeze
- SeparableConv1D   -> expand_dims + DepthwiseConv2D (1 x k) + Conv2D (1 x 1) + squeeze

(TF ops, not Reshape layers: a Keras Reshape keeps the batch dynamic, which the converter turns into
SHAPE/STRIDED_SLICE/PACK ops; expand_dims/squeeze become EXPAND_DIMS/RESHAPE, as converting a Conv1D.)
- SeparableConv2D   -> DepthwiseConv2D + Conv2D (1 x 1)   (what TFMOT's own QAT transform does)

A BatchNormalization / ReLU / Activation / LeakyReLU that alone consumes a rewritten 1D layer moves
inside the expand/squeeze, so TFMOT folds the BN into the Conv2D. Weights are copied (reshaped) and the
rewritten model's outputs are checked against the original's.
"""
import numpy as np

from collabopt.core.tfenv import keras

L = keras.layers
# Elementwise layers that commute with the Reshape back to 1D (BN along the channel axis only).
_FOLLOWERS = (L.BatchNormalization, L.ReLU, L.Activation, L.LeakyReLU)


class RewriteError(RuntimeError):
    """The rewritten model does not compute what the original did (a bug here, never expected)."""


def _conv_args(cfg, prefix=""):
    keys = ("initializer", "regularizer", "constraint")
    return {f"kernel_{k}": cfg[f"{prefix}_{k}" if prefix else f"kernel_{k}"] for k in keys}


def _bias_args(cfg):
    keys = ("use_bias", "bias_initializer", "bias_regularizer", "bias_constraint", "activity_regularizer")
    return {k: cfg[k] for k in keys}


def _depthwise(cfg, name, one_d, **kw):
    k, s, d = (cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"])
    as2d = (lambda v: (1, v[0])) if one_d else tuple
    return L.DepthwiseConv2D(
        as2d(k), strides=as2d(s), padding="valid" if cfg["padding"] == "causal" else cfg["padding"],
        depth_multiplier=cfg["depth_multiplier"], dilation_rate=as2d(d),
        depthwise_initializer=cfg["depthwise_initializer"], depthwise_regularizer=cfg["depthwise_regularizer"],
        depthwise_constraint=cfg["depthwise_constraint"], name=name, **kw)


def _split(layer):
    """(2D layers in call order, [weights per layer], one_d) for a layer we rewrite, or a reason
    (str) it is not rewritten, or None if it is not one of ours."""
    cfg, w, kind = layer.get_config(), layer.get_weights(), type(layer)
    if kind not in (L.Conv1D, L.DepthwiseConv1D, L.SeparableConv1D, L.SeparableConv2D):
        return None
    if cfg["data_format"] != "channels_last":
        return f"{kind.__name__} with data_format={cfg['data_format']} is not rewritten"
    if cfg.get("groups", 1) != 1:
        return f"{kind.__name__} with groups={cfg['groups']} is not rewritten"
    name, one_d = layer.name, kind is not L.SeparableConv2D
    if kind is L.Conv1D:
        conv = L.Conv2D(cfg["filters"], (1, cfg["kernel_size"][0]), strides=(1, cfg["strides"][0]),
                        padding="valid" if cfg["padding"] == "causal" else cfg["padding"],
                        dilation_rate=(1, cfg["dilation_rate"][0]), activation=cfg["activation"],
                        name=name, **_conv_args(cfg), **_bias_args(cfg))
        return [conv], [[w[0][None], *w[1:]]], True
    if kind is L.DepthwiseConv1D:
        dw = _depthwise(cfg, name, True, activation=cfg["activation"], **_bias_args(cfg))
        return [dw], [[w[0][None], *w[1:]]], True
    dw = _depthwise(cfg, f"{name}_dw", one_d, use_bias=False)
    pw = L.Conv2D(cfg["filters"], 1, activation=cfg["activation"], name=name,
                  **_conv_args(cfg, "pointwise"), **_bias_args(cfg))
    dk, pk = (w[0][None], w[1][None]) if one_d else (w[0], w[1])
    return [dw, pw], [[dk], [pk, *w[2:]]], one_d


def _refs(obj, fn):
    """`obj` (a layer's inbound_nodes config) with every [layer, node, tensor(, kwargs)] passed to fn."""
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
            obj = fn(obj)
            return obj[:3] + [_refs(x, fn) for x in obj[3:]]
        return [_refs(x, fn) for x in obj]
    if isinstance(obj, dict):
        return {k: _refs(v, fn) for k, v in obj.items()}
    return obj


def _entry(layer, inbound):
    """A functional-config layer entry for a new layer called on one input reference."""
    return {"class_name": type(layer).__name__, "config": layer.get_config(), "name": layer.name,
            "inbound_nodes": [[[*inbound[:3], {}]]]}


class _Op:
    """A TF op (a TFOpLambda entry) in the rewritten config: expand_dims / squeeze on axis 1."""
    kind = "TFOpLambda"

    def __init__(self, name, function, kwargs):
        self.name, self.function, self.kwargs = name, function, kwargs

    def entry(self, inbound):
        return {"class_name": "TFOpLambda", "name": self.name, "inbound_nodes": [[*inbound[:3], self.kwargs]],
                "config": {"name": self.name, "trainable": True, "dtype": "float32", "function": self.function}}


def _consumers(config):
    count = {}
    for e in config["layers"]:
        _refs(e["inbound_nodes"], lambda r: count.__setitem__(r[0], count.get(r[0], 0) + 1) or r)
    for r in config["output_layers"]:
        count[r[0]] = count.get(r[0], 0) + 1
    return count


def _followers(config, name, layers, count):
    """The chain of elementwise layers that alone consume `name` (they move inside the expand/squeeze)."""
    chain, by_input = [], {}
    for e in config["layers"]:
        nodes = e["inbound_nodes"]
        if len(nodes) == 1 and isinstance(nodes[0], list) and len(nodes[0]) == 1 and isinstance(nodes[0][0], list):
            by_input.setdefault(nodes[0][0][0], []).append(e["name"])
    while count.get(name) == 1 and len(by_input.get(name, [])) == 1:
        nxt = layers[by_input[name][0]]
        if type(nxt) not in _FOLLOWERS or len(nxt._inbound_nodes) != 1:  # noqa: SLF001
            break
        if isinstance(nxt, L.BatchNormalization) and nxt.axis not in ([2], [-1]):
            break
        chain.append(nxt)
        name = nxt.name
    return chain


def rewrite(model, check=True):
    """`model` with its Conv1D / DepthwiseConv1D / SeparableConv1D / SeparableConv2D layers replaced by
    their exact Conv2D / DepthwiseConv2D equivalent; returns (model, {layer: what}, {layer: why not}).
    The model itself comes back when there is nothing to rewrite. With `check`, the outputs on random
    inputs must match the original's (RewriteError otherwise)."""
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    layers = {l.name: l for l in model.layers}
    config, done, skipped, weights = model.get_config(), {}, {}, {}
    count, moved, renamed, out = _consumers(config), set(), {}, []
    names = set(layers)

    def fresh(base):
        n, i = base, 1
        while n in names:
            n, i = f"{base}_{i}", i + 1
        names.add(n)
        return n

    for e in config["layers"]:
        if e["name"] in moved:
            continue
        layer = layers[e["name"]]
        split = _split(layer)
        if isinstance(split, str) or (split and len(layer._inbound_nodes) != 1):  # noqa: SLF001
            skipped[layer.name] = split if isinstance(split, str) else "a shared layer is not rewritten"
            split = None
        if not split:
            out.append(e)
            continue
        new, new_w, one_d = split
        src = e["inbound_nodes"][0][0]
        chain = _followers(config, layer.name, layers, count) if one_d else []
        if one_d:
            pre = [_Op(fresh(f"{layer.name}_expand"), "expand_dims", {"axis": 1})]
            if layer.get_config()["padding"] == "causal":
                k, d = layer.kernel_size[0], layer.dilation_rate[0]
                pre.append(L.ZeroPadding2D(((0, 0), (d * (k - 1), 0)), name=fresh(f"{layer.name}_causal_pad")))
            new = pre + new
            new_w = [[] for _ in pre] + new_w
            for f in chain:
                cfg = f.get_config()
                if isinstance(f, L.BatchNormalization):
                    cfg["axis"] = [3]
                new.append(type(f).from_config(cfg))
                new_w.append(f.get_weights())
                moved.add(f.name)
            new.append(_Op(fresh(f"{layer.name}_squeeze"), "compat.v1.squeeze", {"axis": 1, "name": None}))
            new_w.append([])
        ref = src
        for j, (n, w) in enumerate(zip(new, new_w)):  # refs inside the chain are right already
            out.append({**(n.entry(ref) if isinstance(n, _Op) else _entry(n, ref)), "_new": j > 0})
            weights[n.name] = w
            ref = [n.name, 0, 0]
        for old in [layer.name] + [f.name for f in chain]:
            renamed[old] = new[-1].name
        done[layer.name] = f"{type(layer).__name__} -> " + " + ".join(
            f"{getattr(n, 'kind', type(n).__name__)} {n.name}" for n in new)
    if not done:
        return model, done, skipped
    retarget = lambda r: [renamed.get(r[0], r[0]), 0 if r[0] in renamed else r[1], *r[2:]]  # noqa: E731
    for e in out:  # not inside a chain: its Conv2D keeps the Conv1D's name, which `renamed` maps away
        if not e.pop("_new", False):
            e["inbound_nodes"] = _refs(e["inbound_nodes"], retarget)
    config["layers"], config["output_layers"] = out, [retarget(r) for r in config["output_layers"]]
    custom = {type(l).__name__: type(l) for l in model.layers}
    result = keras.Model.from_config(config, custom_objects=custom)
    for layer in result.layers:
        w = weights.get(layer.name, layers[layer.name].get_weights() if layer.name in layers else None)
        if w:
            layer.set_weights(w)
    if check:
        assert_same_outputs(model, result)
    return result, done, skipped


def assert_same_outputs(model, other, seed=0, rtol=1e-4):
    """RewriteError unless `other` computes what `model` does on a random batch (inference mode)."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=[2] + [d or 16 for d in t.shape[1:]]).astype("float32") for t in model.inputs]

    def run(m):
        outs = m(xs if len(xs) > 1 else xs[0], training=False)
        return np.concatenate([np.ravel(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])])
    a, b = run(model), run(other)
    err = float(np.max(np.abs(a - b))) if a.shape == b.shape else np.inf
    scale = float(np.max(np.abs(a))) or 1.0
    if err > rtol * scale:
        raise RewriteError(f"rewritten model differs from the original: max |diff| {err:.3g} (scale {scale:.3g})")
