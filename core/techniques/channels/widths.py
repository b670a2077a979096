"""Choose per-group channel widths that cut Ethos-U cycles where it costs the least importance.

Importance of an output channel: the L1 norm of its filter, or |gamma| / sqrt(var + eps) of the
BatchNormalization right after it; normalised per layer (mean 1) and averaged over the owners of a
channel group. Cost: Vela's cycles per Keras layer (core.npu.per_layer), scaled with the widths of the groups
each layer reads and writes, re-measured with Vela. Widths are multiples of the accelerator's
channel granularity (or the original width): a width in between costs as much as the next multiple.
"""
import numpy as np

from collabopt.core.techniques.channels.graph import ChannelGraph

__all__ = ["importance", "layer_dims", "estimate", "choose", "vela_measure"]

KERNEL_LAYERS = ("Conv1D", "Conv2D", "Dense", "Conv2DTranspose", "SeparableConv1D", "SeparableConv2D")


SCORES = ("l1", "bn")  # filter importance: L1 norm of the output channel's kernel, or BN's scale after it


def importance(model, graph=None, score="l1"):
    """{group root: score per channel} for every thinnable group (mean 1 per owner, then averaged).
    score 'l1': the L1 norm of each output channel's kernel; 'bn': |gamma| / sqrt(var + eps) of the
    BatchNormalization right after the owner (L1 where there is none)."""
    if score not in SCORES:
        raise ValueError(f"importance: score {score!r} is not one of {', '.join(SCORES)}")
    graph = graph or ChannelGraph(model)
    bn_after = {}
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization" and layer._inbound_nodes:  # noqa: SLF001
            src = layer._inbound_nodes[0].inbound_layers  # noqa: SLF001
            if not isinstance(src, list):
                bn_after[src.name] = layer
    out = {}
    for root, grp in graph.groups().items():
        if grp.fixed or not grp.owners:
            continue
        scores = []
        for name in grp.owners:
            layer = model.get_layer(name)
            bn = bn_after.get(name)
            if score == "bn" and bn is not None and bn.scale:
                s = np.abs(bn.gamma.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            else:
                k = layer.get_weights()[1 if type(layer).__name__.startswith("Separable") else 0]
                k = np.moveaxis(k, -2, -1) if type(layer).__name__ == "Conv2DTranspose" else k
                s = np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
            scores.append(s / (s.mean() + 1e-12))
        out[root] = np.mean(scores, axis=0)
    return out


def layer_dims(graph):
    """{layer: [group roots whose width scales its cost]}: what it writes and, for a kernel layer,
    what it reads (a depthwise / pooling / Add reads what it writes: counted once)."""
    dims = {}
    for layer, kind, ins, out in graph.nodes:
        roots = {graph.find(g) for g, _, _ in out}
        if type(layer).__name__ in KERNEL_LAYERS or kind == "fixed":
            roots |= {graph.find(g) for runs in ins for g, _, _ in runs}
        dims[layer.name] = roots
    return dims


def estimate(layer_cycles, dims, widths, anchor):
    """Total cycles at `widths` ({root: width}) from cycles measured at `anchor` widths: each layer's
    cycles scale with the product of width ratios of the groups it touches (compute-bound view)."""
    total = 0.0
    for layer, cycles in layer_cycles.items():
        f = 1.0
        for r in dims.get(layer, ()):
            if r in widths:
                f *= widths[r] / anchor[r]
        total += cycles * f
    return total


def _step(width, g):
    """Channels to remove to reach the next lower width that is a multiple of g."""
    below = (width - 1) // g * g
    return width - below if below > 0 else 0


def choose(model, measure_fn, granularity, *, target_cycles=None, keep_ratio=None, min_keep=0.25,
           graph=None, remeasure=0.08, max_measures=12, score="l1"):
    """Greedy widths: remove granularity-sized blocks of the least important channels where the
    (estimated) cycle saving per unit of importance lost is largest, until the target is met.

    Args:
      model: the tf_keras model to thin.
      measure_fn: keep -> (total cycles, {keras layer: cycles}) for the model thinned to `keep`
        ({layer: indices}; {} = the original), e.g. `vela_measure(...)`.
      granularity: channel step of the target (core.npu.per_layer.channel_granularity).
      target_cycles: stop once Vela's total is <= this (absolute cycles; <= 1.0: fraction of the original).
      keep_ratio: or stop once the thinnable groups keep <= this fraction of their channels.
      min_keep: no group goes below this fraction of its width (nor below `granularity`).
      remeasure: re-run Vela whenever the estimate fell by this fraction since the last measure.
    Returns {keep, widths, cycles, baseline_cycles, measures: [(estimated, measured)], met}.
    """
    if (target_cycles is None) == (keep_ratio is None):
        raise ValueError("choose: give exactly one of target_cycles, keep_ratio")
    graph = graph or ChannelGraph(model)
    scores = importance(model, graph, score)
    groups = graph.groups()
    order = {r: np.argsort(s, kind="stable") for r, s in scores.items()}  # least important first
    size = {r: groups[r].size for r in scores}
    widths, dims = dict(size), layer_dims(graph)
    base, layer_cycles = measure_fn({})
    target = None if target_cycles is None else (target_cycles * base if target_cycles <= 1 else target_cycles)
    anchor, measured, measures = dict(widths), base, []
    floor = {r: max(granularity, int(np.ceil(min_keep * size[r] / granularity)) * granularity) for r in size}

    def keep_of(w):
        return {groups[r].owners[0]: np.sort(order[r][size[r] - w[r]:]).tolist() for r in w if w[r] < size[r]}

    est, fresh = float(base), True  # fresh: est is Vela's number for the current widths

    def remeasure_now():
        nonlocal measured, layer_cycles, anchor, est, fresh
        measured, layer_cycles = measure_fn(keep_of(widths))
        measures.append((est, measured))
        anchor, est, fresh = dict(widths), float(measured), True

    while True:
        if keep_ratio is not None and sum(widths.values()) <= keep_ratio * sum(size.values()):
            break
        if target is not None and est <= target:
            if fresh or len(measures) >= max_measures:
                break
            remeasure_now()
            continue
        best = None
        for r in scores:
            step = _step(widths[r], granularity)
            if not step or widths[r] - step < min(floor[r], size[r]):
                continue
            removed = order[r][size[r] - widths[r]:size[r] - widths[r] + step]
            lost = float(scores[r][removed].sum())
            gain = est - estimate(layer_cycles, dims, {**widths, r: widths[r] - step}, anchor)
            if best is None or gain / (lost + 1e-6) > best[0]:
                best = (gain / (lost + 1e-6), r, step)
        if best is None:
            break  # every group at its floor
        widths[best[1]] -= best[2]
        est, fresh = estimate(layer_cycles, dims, widths, anchor), False
        if target is not None and est < (1 - remeasure) * measured and len(measures) < max_measures:
            remeasure_now()
    if not fresh:
        remeasure_now()
    return {"keep": keep_of(widths), "widths": widths, "sizes": size, "cycles": measured,
            "baseline_cycles": base, "measures": measures,
            "met": measured <= target if target is not None else
            sum(widths.values()) <= keep_ratio * sum(size.values())}


def vela_measure(model, representative, accelerator, workdir, graph=None):
    """A `measure_fn` for `choose`: thin (surgery), INT8 (collabopt.core.convert), Vela per layer."""
    import os

    from collabopt.core.npu import per_layer
    from collabopt.core.tflite import convert
    from collabopt.core.techniques.channels.surgery import thin

    graph = graph or ChannelGraph(model)
    names = {layer.name for layer in model.layers}
    count = [0]

    def measure(keep):
        count[0] += 1
        m = thin(model, keep, graph)[0] if keep else model
        path = os.path.join(workdir, "m%03d.tflite" % count[0])
        os.makedirs(workdir, exist_ok=True)
        with open(path, "wb") as f:
            f.write(convert.to_int8(m, representative))
        res = per_layer.measure(path, os.path.join(workdir, "vela%03d" % count[0]), accelerator, layer_names=names)
        return res["npu_cycles"], {k: v["cycles"] for k, v in res["layers"].items()}

    return measure
