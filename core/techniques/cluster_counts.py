"""How many clusters each layer can take: never more than its kernel has (non-zero) weights.

TFMOT's k-means++ initialization samples the centroids from the weights themselves and crashes
(`Expected num_to_sample <= points.rows(). 9 vs 5`, no layer named) when a kernel holds fewer weights
than clusters; with preserve_sparsity it reserves one centroid for zero and splits the others
between the negative and the positive weights in proportion, so each side must hold its share.
A small kernel (a SeparableConv2D's pointwise kernel on one input channel, a pruned 1x1 conv) gets
the largest count that fits, or is left out when even TFMOT's minimum does not; both are named.
"""
import numpy as np

from collabopt.core.tfenv import keras

from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry  # noqa: E402

_REGISTRY = clustering_registry.ClusteringRegistry


def _weights(layer):
    """The arrays TFMOT clusters in `layer` (its registry's weight names; an RNN's cell kernels)."""
    if isinstance(layer, keras.layers.RNN):
        cells = getattr(layer.cell, "cells", [layer.cell])
        return [getattr(c, n).numpy() for c in cells for n in ("kernel", "recurrent_kernel") if hasattr(c, n)]
    if type(layer) not in _REGISTRY._LAYERS_WEIGHTS_MAP or not layer.trainable_weights:  # noqa: SLF001
        return []
    return [getattr(layer, n).numpy() for n in _REGISTRY._weight_names(layer)]  # noqa: SLF001


def _fits(w, k, preserve_sparsity):
    """Can TFMOT initialize k centroids from the values w (one tensor, or one channel of it)?"""
    if not preserve_sparsity:
        return k <= w.size
    neg, pos = int(np.sum(w < 0)), int(np.sum(w > 0))
    if neg + pos == 0:
        return False
    n_neg = int(np.round((k - 1) * neg / (neg + pos)))  # tf.math.round: half to even, as np.round
    return n_neg <= neg and k - 1 - n_neg <= pos


def fitting(layer, k, preserve_sparsity, per_channel):
    """The largest count <= k that TFMOT can initialize for every weight of `layer` (per output
    channel where it clusters per channel: Conv2D only), or 0 if none can."""
    if isinstance(layer, keras.layers.Conv2D):
        # TFMOT silently skips a Conv2D with no more weights (per channel: per bias entry) than clusters.
        size = layer.kernel.shape.num_elements()
        cap = size / layer.trainable_weights[-1].shape.num_elements() if per_channel else size
        k = min(k, int(np.ceil(cap)) - 1)
    groups = []
    for w in _weights(layer):
        if per_channel and isinstance(layer, keras.layers.Conv2D):
            groups += list(w.reshape(-1, w.shape[-1]).T)
        else:
            groups.append(w.ravel())
    while k > 0 and not all(_fits(g, k, preserve_sparsity) for g in groups):
        k -= 1
    return k


def plan(model, number_of_clusters, preserve_sparsity, per_channel, left_out=(), layer_clusters=None):
    """({layer: clusters} for the layers to cluster, {layer: why clamped}, {layer: why left out}).

    `layer_clusters` ({layer: clusters}) restricts clustering to those layers; otherwise every layer
    not in `left_out` with weights TFMOT clusters gets `number_of_clusters`. TFMOT asks for more than
    2 clusters with preserve_sparsity (more than 1 without): a layer that fits fewer is left out.
    """
    minimum = 3 if preserve_sparsity else 2
    counts, clamped, dropped = {}, {}, {}
    what = "non-zero weights" if preserve_sparsity else "weights"
    for layer in model.layers:
        if layer.name in left_out or (layer_clusters and layer.name not in layer_clusters) or not _weights(layer):
            continue
        asked = (layer_clusters or {}).get(layer.name, number_of_clusters)
        k = fitting(layer, asked, preserve_sparsity, per_channel)
        if k < minimum:
            dropped[layer.name] = f"too few {what} for {minimum} clusters: left out of clustering"
        elif k < asked:
            clamped[layer.name] = f"{k} clusters, not {asked}: its kernel has too few {what}"
        if k >= minimum:
            counts[layer.name] = k
    return counts, clamped, dropped
