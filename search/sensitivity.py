"""Per-layer sensitivity and one-shot estimates: a model with some kernels pruned / clustered in one
shot (no fine-tuning), converted to INT8 (PTQ) and compiled with Vela, next to its INT8 eval metric on a
bounded, streamed eval sample.

Vela reports no per-layer encoded weights, so what one layer's change saves on the NPU is measured
the honest way: compile the model with only that layer changed and diff Vela's totals against the
unchanged model's.
"""
import dataclasses
import os

import numpy as np

from collabopt.core.tflite import convert
from collabopt.core.techniques import layer_support, optimize
from collabopt.core.evaluation import metrics
from collabopt.search import space
from collabopt.core.model import train
from collabopt.core.npu import vela
from collabopt.core.tfenv import keras

NPU_NUMBERS = space.NPU_NUMBERS


def prune_kernel(w, sparsity):
    """Magnitude pruning of one tensor: the round(sparsity * size) smallest |w| become 0."""
    n = int(round(sparsity * w.size))
    out = w.copy().reshape(-1)
    if n:
        out[np.argsort(np.abs(out), kind="stable")[:n]] = 0
    return out.reshape(w.shape)


def cluster_kernel(w, clusters, iterations=20):
    """1-D k-means of one tensor (linear init between min and max), zeros kept as zeros and counted
    as one of the clusters, as sparsity-preserving clustering does."""
    flat = w.reshape(-1)
    nz = flat != 0
    k = clusters - 1 if not nz.all() else clusters
    vals = flat[nz]
    if k < 1 or vals.size == 0:
        return w.copy()
    centroids = np.linspace(vals.min(), vals.max(), k)
    for _ in range(iterations):
        assign = np.argmin(np.abs(vals[:, None] - centroids[None, :]), axis=1)
        for c in range(k):
            if np.any(assign == c):
                centroids[c] = vals[assign == c].mean()
    out = flat.copy()
    out[nz] = centroids[np.argmin(np.abs(vals[:, None] - centroids[None, :]), axis=1)]
    return out.reshape(w.shape)


def layers(model, technique):
    """The Conv2D/Dense layers `technique` can act on (depthwise kernels: TFMOT neither prunes nor
    clusters them), in model order."""
    left_out = layer_support.plan(model, technique)
    return [l.name for l, _ in optimize._kernels(model)  # noqa: SLF001
            if not isinstance(l, keras.layers.DepthwiseConv2D) and l.name not in left_out]


def one_shot(model, layer_sparsity=None, layer_clusters=None):
    """A copy of `model` with the named kernels pruned ({layer: sparsity}) then clustered
    ({layer: clusters}), no fine-tuning."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        s, k = (layer_sparsity or {}).get(layer.name), (layer_clusters or {}).get(layer.name)
        if s is None and k is None:
            continue
        w = layer.kernel.numpy()
        if s is not None:
            w = prune_kernel(w, s)
        if k is not None:
            w = cluster_kernel(w, k)
        layer.kernel.assign(w)
    return copy


def thinned(model, keep_ratio, sample, target, work_dir, *, score="l1", min_keep=0.25, exclude_layers=()):
    """`model` thinned to `keep_ratio` of its thinnable channels for `target`: the ChannelPruner's own
    choice (Vela's per-layer cycles against the channels' importance) and surgery, no fine-tuning."""
    from collabopt.core.stages import VELA_SAMPLES
    from collabopt.core.techniques.channels import thinning

    return thinning.thin_for_npu(model, sample.data_spec.representative(VELA_SAMPLES), target, work_dir,
                                 keep_ratio=keep_ratio, score=score, min_keep=min_keep,
                                 exclude_layers=exclude_layers)[0]


@dataclasses.dataclass(frozen=True)
class Sample:
    """What a one-shot model is measured on: the first `representative` train examples calibrate
    the PTQ conversion, the first `eval_limit` eval examples (streamed, inputs.DataSpec) give the
    INT8 metric (`training.eval_metric`, core.metrics)."""
    data_spec: object  # inputs.DataSpec
    training: object = train.TrainingSpec()
    representative: int = 100
    eval_limit: int = 500


def measure(model, sample, out_dir, target="ethos-u55-128", **vela_options):
    """INT8 (PTQ) metric on the sample and Vela's numbers of `model`: {"int8_metric", NPU_NUMBERS}."""
    spec = sample.data_spec
    tflite = convert.to_int8(model, spec.representative(sample.representative))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.tflite")
    with open(path, "wb") as f:
        f.write(tflite)
    npu = vela.compile_for_npu(path, out_dir, target, **vela_options)
    batches = spec.eval_dataset(limit=sample.eval_limit).as_numpy_iterator()
    return {"int8_metric": metrics.of_tflite(sample.training, tflite, batches, spec.target),
            **{k: npu[k] for k in NPU_NUMBERS}}


def changes(model, sparsities=(0.5, 0.75), clusters=(16, 8)):
    """(technique, layer, value) of every one-layer change the sensitivity table measures, in order."""
    for technique, values in (("prune", sparsities), ("cluster", clusters)):
        for name in layers(model, technique):
            for v in values:
                yield technique, name, v


def row(model, sample, technique, name, value, base, work_dir, target="ethos-u55-128", **vela_options):
    """One row of the sensitivity table: `name` alone pruned to `value` or clustered to `value` clusters,
    measured: {"layer", "technique", "value", "drop", "saved": {NPU number: unchanged - changed}}, the
    drop in the eval metric's units (search.space.metric_drop) against `base` (the unchanged model's)."""
    change = {name: value}
    m = measure(one_shot(model, change if technique == "prune" else None, change if technique == "cluster" else None),
                sample, os.path.join(work_dir, f"{technique}_{name}_{value}"), target, **vela_options)
    return {"layer": name, "technique": technique, "value": value,
            "drop": space.metric_drop(m, base, sample.training.eval_metric),
            "saved": {k: base[k] - m[k] for k in ("encoded_weights_bytes", "npu_cycles")}}


def table(model, sample, work_dir, *, sparsities=(0.5, 0.75), clusters=(16, 8), target="ethos-u55-128",
          **vela_options):
    """The per-layer sensitivity table (a `row` per `changes`). Returns (rows, the unchanged model's measure)."""
    base = measure(model, sample, os.path.join(work_dir, "base"), target, **vela_options)
    return [row(model, sample, t, n, v, base, work_dir, target, **vela_options)
            for t, n, v in changes(model, sparsities, clusters)], base
