"""Which output channels of a tf_keras model can be removed together: the channel groups.

Every tensor's last axis is described as runs of channels of *owners* (the layers that create
channels: Conv, Dense, ...): ``[(owner, start, length), ...]``. Layers that do not own channels
(BN, activations, depthwise, pooling, ...) pass their input's runs on; Concatenate joins them;
Flatten repeats them per position. Add / Multiply / ... must see the same channel set on every
input, so their inputs' owners are merged (union-find) into one group. A group reaching the model
output, or a layer this module does not understand, is *fixed* (kept at full width) with a reason.
"""
import dataclasses

import numpy as np

OWNERS = ("Conv1D", "Conv2D", "Dense", "Conv2DTranspose", "SeparableConv2D", "SeparableConv1D")
# Per-channel (or channel-free) layers whose output channel c is their input channel c.
PASS = ("BatchNormalization", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Dropout",
        "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "MaxPooling1D", "MaxPooling2D",
        "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "UpSampling1D", "UpSampling2D", "Activation",
        "Rescaling", "DepthwiseConv2D", "Identity", "ActivityRegularization")
MERGE = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
# TFOpLambda symbols that act per element (one tensor and scalars: pass; two tensors: merge).
ELEMENTWISE_OPS = {"__operators__.add", "math.add", "math.multiply", "math.subtract", "math.truediv",
                   "math.divide", "nn.relu", "nn.relu6", "math.sigmoid", "nn.sigmoid", "math.tanh",
                   "nn.silu", "nn.swish", "math.maximum", "math.minimum", "clip_by_value",
                   "math.negative", "math.abs", "math.square", "identity", "cast", "nn.leaky_relu",
                   "nn.elu", "nn.gelu", "math.scalar_mul"}
SOFTMAX = ("softmax", "log_softmax")


@dataclasses.dataclass
class Group:
    """Output channels of `owners` that are removed together (index i of every owner is one channel)."""
    root: str
    owners: list
    size: int
    fixed: str = None  # why the group stays at full width (None: it can be thinned)


class ChannelGraph:
    """The channel structure of one model. `nodes`: [(layer, kind, [input runs], output runs)]."""

    def __init__(self, model):
        self.model = model
        self.parent, self.size, self.fixed = {}, {}, {}
        self.nodes, self.runs = [], {}
        self._walk()

    # ---------------------------------------------------------------- union-find over owners
    def find(self, g):
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def _new(self, name, size, fixed=None):
        self.parent[name], self.size[name] = name, int(size)
        if fixed:
            self.fixed[name] = fixed
        return [(name, 0, int(size))]

    def _union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            if b in self.fixed and a not in self.fixed:
                self.fixed[a] = self.fixed[b]

    def fix(self, runs, why):
        for g, _, _ in runs:
            self.fixed.setdefault(self.find(g), why)

    def fixed_reason(self, g):
        return self.fixed.get(self.find(g))

    # ---------------------------------------------------------------- walking the graph
    def _walk(self):
        m = self.model
        nodes = [n for d in sorted(m._nodes_by_depth, reverse=True) for n in m._nodes_by_depth[d]]  # noqa: SLF001
        calls = {}
        for n in nodes:
            calls[n.layer.name] = calls.get(n.layer.name, 0) + 1
        for n in nodes:
            layer = n.layer
            outs = [t for t in _flat(n.outputs)]
            if n.is_input:
                self.runs[id(outs[0])] = self._new("input:" + layer.name, outs[0].shape[-1], "model input")
                continue
            ins = [self.runs[id(t)] for t in n.keras_inputs]
            kind, out = self._rule(layer, n, ins, shared=calls[layer.name])
            for i, t in enumerate(outs):
                self.runs[id(t)] = out if len(outs) == 1 else self._new(
                    "%s:%d" % (layer.name, i), t.shape[-1], "output of multi-output layer " + layer.name)
            self.nodes.append((layer, kind, ins, self.runs[id(outs[0])]))
        for t in _flat(m.outputs):
            self.fix(self.runs[id(t)], "model output")

    def _rule(self, layer, node, ins, shared):
        """(kind, output runs) of one call of `layer`; kind: owner|pass|merge|concat|flatten|fixed."""
        cls, cfg = type(layer).__name__, layer.get_config()
        out_c = _last_dim(node.outputs)
        why = _unsupported(layer, cls, cfg, node, ins) or ("shared layer (called %d times)" % shared if shared > 1 else None)
        if why:
            for r in ins:
                self.fix(r, "feeds %s: %s" % (layer.name, why))
            return "fixed", self._new(layer.name, out_c, "output of %s: %s" % (layer.name, why))
        if cls in OWNERS:
            return "owner", self._new(layer.name, out_c)
        if cls == "Concatenate":
            return "concat", [r for runs in ins for r in runs]
        if cls == "Flatten":
            positions = int(np.prod(node.keras_inputs[0].shape[1:-1]))
            return "flatten", ins[0] * positions
        if cls in MERGE or (cls == "TFOpLambda" and len(ins) > 1):
            return "merge", self._merge(layer, ins)
        if cls in ("Activation", "Softmax") and (cls == "Softmax" or cfg.get("activation") in SOFTMAX):
            self.fix(ins[0], "feeds %s (softmax over channels)" % layer.name)
        return "pass", ins[0]

    def _merge(self, layer, ins):
        """Runs of an elementwise op over several inputs; their channel sets become one."""
        full = [r for r in ins if _length(r) > 1]  # a 1-channel input broadcasts
        if not full:
            return ins[0]
        ref = full[0]
        for other in full[1:]:
            pairs = _align(ref, other)
            ok = pairs is not None and all(
                (self.find(a) == self.find(b) and sa == sb) or
                (sa == sb == 0 and n == self.size[a] == self.size[b])
                for (a, sa, b, sb, n) in pairs)
            if not ok:
                why = "inputs of %s have channel maps that do not line up" % layer.name
                self.fix(ref, why)
                self.fix(other, why)
                continue
            for a, _, b, _, _ in pairs:
                self._union(a, b)
        return ref

    # ---------------------------------------------------------------- results
    def groups(self):
        """{root: Group} over every owner (and the model inputs), roots as found by union-find."""
        out = {}
        for g in self.parent:
            r = self.find(g)
            grp = out.setdefault(r, Group(r, [], self.size[r], self.fixed.get(r)))
            if not g.startswith("input:") and ":" not in g:
                grp.owners.append(g)
        return out

    def group_of(self, layer_name):
        """Root of the group a layer's output is, if that output is one whole group; else None."""
        for layer, _, _, out in self.nodes:
            if layer.name == layer_name:
                if len(out) == 1 and out[0][1] == 0 and out[0][2] == self.size[out[0][0]]:
                    return self.find(out[0][0])
                return None
        raise KeyError("model has no layer %r" % layer_name)

    def positions(self, runs, keep):
        """Indices along a tensor's last axis that survive, `keep` = {root: sorted kept indices}."""
        out, offset = [], 0
        for g, start, n in runs:
            k = keep.get(self.find(g))
            idx = np.arange(n) if k is None else np.asarray([i - start for i in k if start <= i < start + n])
            out.append(offset + idx)
            offset += n
        return np.concatenate(out).astype(int) if out else np.zeros(0, int)


def _flat(x):
    return x if isinstance(x, (list, tuple)) else [x]


def _last_dim(outputs):
    return int(_flat(outputs)[0].shape[-1])


def _length(runs):
    return sum(n for _, _, n in runs)


def _align(a, b):
    """Pieces (ga, sa, gb, sb, n) where runs a and b cover the same positions; None if lengths differ."""
    if _length(a) != _length(b):
        return None
    a, b, out = list(a), list(b), []
    while a:
        (ga, sa, na), (gb, sb, nb) = a[0], b[0]
        n = min(na, nb)
        out.append((ga, sa, gb, sb, n))
        a[0], b[0] = (ga, sa + n, na - n), (gb, sb + n, nb - n)
        a, b = [r for r in a if r[2]], [r for r in b if r[2]]
    return out


def _scalar(v):
    return isinstance(v, (int, float, bool)) or v is None or (np.ndim(v) == 0 and not hasattr(v, "shape"))


def _unsupported(layer, cls, cfg, node, ins):
    """Why channel surgery cannot see through this call (None if it can)."""
    if cfg.get("data_format") == "channels_first":
        return "channels_first"
    if cls in OWNERS:
        if cfg.get("groups", 1) != 1:
            return "grouped convolution"
        if cls.startswith("Separable") and cfg.get("depth_multiplier", 1) != 1:
            return "depth_multiplier %d" % cfg["depth_multiplier"]
        return None
    if cls == "DepthwiseConv2D" and cfg.get("depth_multiplier", 1) != 1:
        return "depth_multiplier %d" % cfg["depth_multiplier"]
    if cls == "BatchNormalization" and cfg.get("axis") not in (-1, [-1], len(node.keras_inputs[0].shape) - 1,
                                                               [len(node.keras_inputs[0].shape) - 1]):
        return "BatchNormalization over axis %s" % cfg.get("axis")
    if cls == "Rescaling" and not (np.ndim(cfg.get("scale")) == 0 and np.ndim(cfg.get("offset")) == 0):
        return "per-channel Rescaling"
    if cls == "Concatenate":
        rank = len(node.keras_inputs[0].shape)
        return None if cfg.get("axis") in (-1, rank - 1) else "Concatenate over axis %s" % cfg.get("axis")
    if cls == "Flatten":
        return None if all(d is not None for d in node.keras_inputs[0].shape[1:]) else "Flatten of unknown shape"
    if cls == "Reshape":
        return "Reshape" if not _channel_reshape(node) else None
    if cls == "TFOpLambda":
        if layer.symbol not in ELEMENTWISE_OPS:
            return "op %s" % layer.symbol
        from collabopt.core.tfenv import tf  # only here: the module itself needs no TensorFlow
        args = tf.nest.flatten((node.call_args, node.call_kwargs))
        consts = [a for a in args if not hasattr(a, "_keras_history") and not _scalar(a)]
        return "op %s with a tensor constant" % layer.symbol if consts else None
    if cls in PASS or cls in MERGE or cls == "Softmax":
        return None
    return "%s layer" % cls


def _channel_reshape(node):
    """A Reshape that keeps the last axis as it is (e.g. (C,) -> (1, 1, C) in squeeze-excite)."""
    src, dst = node.keras_inputs[0].shape, _flat(node.outputs)[0].shape
    return src[-1] == dst[-1] and None not in src[1:] and None not in dst[1:]
