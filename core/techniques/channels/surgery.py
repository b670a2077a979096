"""Channel pruning as real surgery: a smaller dense tf_keras model with the kept channels' weights.

`thin(model, {layer: kept output-channel indices})` returns the thinner model and the layers it
left at full width with the reason. Dependencies come from `channel_graph`: a kept set applies to
the layer's whole channel group (the producers of one Add share it; BN, depthwise, activations,
pooling follow their producer; a Dense after Flatten loses the matching rows; a squeeze-excite
block's last layer follows the trunk it scales).
"""
import numpy as np

from collabopt.core.techniques.channels.graph import ChannelGraph

__all__ = ["thin", "plan", "resolve_keep"]


def resolve_keep(graph, keep):
    """({group root: kept indices}, {layer: why left at full width}) from {layer: kept indices}.

    A layer names its output's channel group (any member, or a BN/activation after it). Raises
    ValueError for unknown layers, bad indices, or two layers of one group asking different sets.
    """
    by_root, asked_by, left = {}, {}, {}
    for name, idx in keep.items():
        try:
            root = graph.group_of(name)
        except KeyError:
            raise ValueError("thin: the model has no layer %r" % name) from None
        if root is None:
            left[name] = "its output is not one channel group (a Concatenate or Flatten)"
            continue
        size = graph.size[root]
        idx = sorted({int(i) for i in np.asarray(idx).ravel()})
        if not idx:
            raise ValueError("thin: %s: keeps no channel (keep at least one)" % name)
        if idx[0] < 0 or idx[-1] >= size:
            raise ValueError("thin: %s: channel index out of range 0..%d" % (name, size - 1))
        if len(idx) == size:
            continue
        why = graph.fixed_reason(root)
        if why:
            left[name] = why
            continue
        if root in by_root and by_root[root] != idx:
            raise ValueError("thin: %s and %s are one channel group (%s) but keep different channels"
                             % (asked_by[root], name, ", ".join(graph.groups()[root].owners)))
        by_root[root], asked_by[root] = idx, name
    return by_root, left


def plan(model, keep, graph=None):
    """(graph, {layer: (kept input positions, kept output positions)}, left) for `keep`."""
    graph = graph or ChannelGraph(model)
    by_root, left = resolve_keep(graph, keep)
    layers = {}
    for layer, kind, ins, out in graph.nodes:
        in_pos = graph.positions(ins[0], by_root) if ins else None
        layers[layer.name] = (in_pos, graph.positions(out, by_root), [_length(r) for r in ins])
    return graph, by_root, layers, left


def _length(runs):
    return sum(n for _, _, n in runs)


def thin(model, keep, graph=None):
    """The model with only the kept channels, weights sliced; and {layer: why left at full width}.

    Args:
      model: a tf_keras functional or Sequential model (built).
      keep: {layer name: indices of the output channels to keep}; a layer not named keeps all.
      graph: a ChannelGraph of `model`, if already computed.
    """
    from collabopt.core.tfenv import keras

    graph, by_root, layers, left = plan(model, keep, graph)

    def clone(layer):
        cfg = layer.get_config()
        if layer.name in layers:
            _, out_pos, _ = layers[layer.name]
            cls = type(layer).__name__
            if "filters" in cfg and cls != "DepthwiseConv2D":
                cfg["filters"] = len(out_pos)
            elif "units" in cfg:
                cfg["units"] = len(out_pos)
            elif cls == "Reshape":
                cfg["target_shape"] = (*tuple(cfg["target_shape"])[:-1], len(out_pos))
        return type(layer).from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and layer.name in layers:
            in_pos, out_pos, in_sizes = layers[layer.name]
            new.get_layer(layer.name).set_weights(_slice(layer, weights, in_pos, out_pos, in_sizes))
        elif weights:
            new.get_layer(layer.name).set_weights(weights)
    return new, left


def _slice(layer, weights, in_pos, out_pos, in_sizes):
    """The layer's weights restricted to the kept input and output channels."""
    cls = type(layer).__name__
    if cls in ("Conv1D", "Conv2D", "Dense"):
        w = [weights[0][..., in_pos, :][..., out_pos]]
        return w + [b[out_pos] for b in weights[1:]]
    if cls == "Conv2DTranspose":  # kernel (h, w, out, in)
        return [weights[0][..., out_pos, :][..., in_pos]] + [b[out_pos] for b in weights[1:]]
    if cls in ("SeparableConv1D", "SeparableConv2D"):  # depthwise (.., in, 1), pointwise (.., in, out)
        dw, pw = weights[0][..., in_pos, :], weights[1][..., in_pos, :][..., out_pos]
        return [dw, pw] + [b[out_pos] for b in weights[2:]]
    if cls == "DepthwiseConv2D":  # kernel (h, w, C, 1), bias (C,)
        return [weights[0][:, :, in_pos, :]] + [b[in_pos] for b in weights[1:]]
    n_in = in_sizes[0] if in_sizes else None
    # BN, PReLU, ...: every per-channel vector (last axis = channels) follows the input.
    return [w[..., in_pos] if w.ndim and w.shape[-1] == n_in else w for w in weights]
