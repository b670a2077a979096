"""Channel pruning for the NPU: choose NPU-aligned widths (widths.choose, scored by Vela's per-layer
cycles and the channels' L1 norm) and cut them out by surgery, naming what stays at full width."""
import re

from collabopt.core import tree_paths
from collabopt.core.npu import per_layer
from collabopt.core.techniques.channels import widths
from collabopt.core.techniques.channels.graph import ChannelGraph
from collabopt.core.techniques.channels.surgery import thin

# Why a group stays at full width without the model being at fault: not reported as left out.
_BY_DESIGN = ("model output", "model input")


class UnthinnableLayersError(tree_paths.PathError, ValueError):
    """`strict`: channel surgery cannot see through some layers; the message lists every one."""


def left_out(graph, excluded=()):
    """{owner layer: why it stays at full width} for every group fixed by an unsupported layer (the
    model's own output and input are fixed by design and not listed)."""
    owners = {layer.name for layer, kind, _, _ in graph.nodes if kind == "owner"}  # not a fixed layer's own output
    out = {}
    for grp in graph.groups().values():
        if grp.fixed and grp.fixed not in _BY_DESIGN:
            out.update({o: grp.fixed for o in grp.owners if o in owners and o not in excluded})
    return out


def exclude(graph, patterns, section="thin"):
    """Fix the groups of the layers whose names match `patterns` (regexes, matched whole); returns
    {layer: why} for them."""
    regexes = [re.compile(p) for p in patterns]
    why = f"excluded by {section}.exclude_layers"
    out = {}
    for layer, kind, _, runs in graph.nodes:
        if kind == "owner" and any(r.fullmatch(layer.name) for r in regexes):
            graph.fix(runs, why)
            out[layer.name] = why
    return out


def thin_for_npu(model, representative, accelerator, workdir, *, keep_ratio=None, target_cycles=None,
                 score="l1", min_keep=0.25, exclude_layers=(), strict=False):
    """(thinned model, choice, {layer: why left at full width}) for one Ethos-U target.

    keep_ratio: keep this fraction of the thinnable channels; target_cycles: or reach this many Vela
    cycles (<= 1: a fraction of the model's own). `choice` is widths.choose's result ({widths, sizes,
    cycles, baseline_cycles, met, ...}), its cycles measured by Vela on the INT8 thinned model."""
    graph = ChannelGraph(model)
    excluded = exclude(graph, exclude_layers)
    missing = left_out(graph, excluded)
    if strict and missing:
        raise UnthinnableLayersError(
            f"thin: {len(missing)} layer(s) channel surgery cannot thin (strict: true): "
            + "; ".join(f"{n} ({why})" for n, why in missing.items())
            + ". Exclude them with thin.exclude_layers, or drop strict to leave them at full width.")
    measure = widths.vela_measure(model, representative, accelerator, workdir, graph=graph)
    choice = widths.choose(model, measure, per_layer.channel_granularity(accelerator), keep_ratio=keep_ratio,
                           target_cycles=target_cycles, min_keep=min_keep, graph=graph, score=score)
    new, not_thinned = thin(model, choice["keep"], graph) if choice["keep"] else (model, {})
    return new, choice, {**excluded, **missing, **not_thinned}
