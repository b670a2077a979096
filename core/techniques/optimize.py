"""The three TFMOT techniques, each a pure function Keras model -> Keras model.

prune() and cluster() return stripped models (plain layers, weights with zeros / shared values);
preserving_qat() returns the QAT model (fake-quant wrappers) that TFLite conversion reads.
"""
import contextlib
import logging

import numpy as np

from collabopt import schemas
from collabopt.schemas.defaults import DEFAULTS
from collabopt.core import tree_paths
from collabopt.core.techniques import cluster_counts, layer_support
from collabopt.core.model import train
from collabopt.core.tfenv import keras, tf

import tensorflow_model_optimization as tfmot  # noqa: E402  (after tfenv: needs tf_keras)
from tensorflow_model_optimization.python.core.clustering.keras.experimental import (  # noqa: E402
    cluster as exp_cluster)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E402,E501
    cluster_preserve_quantize_registry as cp_registry)

log = logging.getLogger("collabopt")
PRUNE, CLUSTER, QAT = (DEFAULTS[s] for s in ("prune", "cluster", "qat"))  # the config's defaults

CENTROID_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
# Layer types whose kernels the techniques act on (TFLite: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED).
KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _kernels(model):
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, KERNEL_LAYERS):
            w = getattr(inner, "depthwise_kernel", None)
            yield inner, (w if w is not None else inner.kernel).numpy()


def per_layer(model, values, field, left_out):
    """(left_out widened to every layer not in `values`, {layer: value}) for a per-layer map; a name
    the model does not have is a ConfigError naming `field`."""
    names = {l.name for l in model.layers}
    unknown = sorted(set(values) - names)
    if unknown:
        raise schemas.ConfigError(f"{field}: no layer named {', '.join(map(repr, unknown))} in the model")
    return set(left_out) | (names - set(values)), dict(values)


def prune(model, x, y=None, *, target_sparsity=PRUNE["target_sparsity"], schedule=PRUNE["schedule"],
          frequency=PRUNE["frequency"], epochs=PRUNE["epochs"], batch_size=PRUNE["batch_size"],
          learning_rate=PRUNE["learning_rate"], m_by_n=PRUNE["m_by_n"], log_dir=None, seed=PRUNE["seed"], left_out=(),
          training=train.TrainingSpec(), layer_sparsity=PRUNE["layer_sparsity"]):
    """Magnitude pruning to `target_sparsity` (or M:N structured sparsity, e.g. (2, 4)); the layers
    named in `left_out` (layer_support.plan) stay as they are. x, y: arrays, or a tf.data.Dataset x
    (train.fit), whose cardinality gives the schedule's steps per epoch. With `layer_sparsity`
    ({layer: sparsity}) only those layers are pruned, each to its own target."""
    schemas.check({"prune": {"target_sparsity": target_sparsity, "schedule": schedule, "frequency": frequency,
                             "m_by_n": list(m_by_n) if m_by_n else None,
                             "layer_sparsity": layer_sparsity}})  # the config's rules, not new ones
    if m_by_n:
        target_sparsity = m_by_n[0] / m_by_n[1]  # TFMOT's (M, N): M zeros in every N consecutive weights
    steps = max(1, train.steps_per_epoch(x, batch_size)) * epochs

    def sched(target):
        if schedule == "constant":  # TFMOT counts steps from 1: begin 0 would first prune at `frequency`
            return tfmot.sparsity.keras.ConstantSparsity(target, begin_step=1, frequency=frequency)
        # polynomial: reach the target after ~2/3 of the steps, so the last steps fine-tune at full sparsity.
        end = max(1, int(steps * 2 / 3))
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end, frequency=min(frequency, end))
    with tree_paths.refused("TFMOT cannot prune this model"):
        if layer_sparsity:
            left_out, targets = per_layer(model, layer_sparsity, "prune.layer_sparsity", left_out)
            pruned = layer_support.wrap(model, left_out, lambda l: tfmot.sparsity.keras.prune_low_magnitude(
                l, pruning_schedule=sched(targets[l.name])))
        else:
            kwargs = {"sparsity_m_by_n": tuple(int(v) for v in m_by_n)} if m_by_n else {
                "pruning_schedule": sched(target_sparsity)}
            pruned = layer_support.wrap(model, left_out, lambda l: tfmot.sparsity.keras.prune_low_magnitude(
                l, **kwargs)) if left_out else tfmot.sparsity.keras.prune_low_magnitude(model, **kwargs)
    train.fit(pruned, x, y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
              stage="prune", log_dir=log_dir, seed=seed, training=training,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(pruned)


def cluster(model, x, y=None, *, number_of_clusters=CLUSTER["number_of_clusters"],
            centroid_init=CLUSTER["centroid_init"], preserve_sparsity=True, per_channel=CLUSTER["per_channel"],
            epochs=CLUSTER["epochs"], batch_size=CLUSTER["batch_size"], learning_rate=CLUSTER["learning_rate"],
            log_dir=None, seed=CLUSTER["seed"], left_out=(), training=train.TrainingSpec(),
            layer_clusters=CLUSTER["layer_clusters"]):
    """Weight clustering; with preserve_sparsity the zeros of a pruned model stay zero; the layers
    named in `left_out` stay as they are. With `layer_clusters` ({layer: clusters}) only those
    layers are clustered, each to its own count. No layer gets more clusters than its kernel has
    (non-zero) weights (`cluster_counts`: clamped, or left out, and logged)."""
    schemas.check({"cluster": {"number_of_clusters": number_of_clusters, "centroid_init": centroid_init,
                               "per_channel": per_channel, "layer_clusters": layer_clusters}})
    keras.utils.set_random_seed(seed)
    init = getattr(tfmot.clustering.keras.CentroidInitialization, CENTROID_INITS[centroid_init])
    params = dict(number_of_clusters=number_of_clusters, cluster_centroids_init=init,
                  preserve_sparsity=preserve_sparsity, cluster_per_channel=per_channel)
    if layer_clusters:
        per_layer(model, layer_clusters, "cluster.layer_clusters", left_out)  # names checked first
    counts, clamped, dropped = cluster_counts.plan(model, number_of_clusters, preserve_sparsity, per_channel,
                                                   left_out, layer_clusters)
    for name, why in {**clamped, **dropped}.items():
        log.info("[cluster] %s: %s", name, why)
    with tree_paths.refused("TFMOT cannot cluster this model"):
        if layer_clusters or clamped or dropped:
            left_out = set(left_out) | set(dropped) | (
                {l.name for l in model.layers} - set(counts) if layer_clusters else set())
            clustered = layer_support.wrap(model, left_out, lambda l: exp_cluster.cluster_weights(
                l, **{**params, "number_of_clusters": counts.get(l.name, number_of_clusters)}))
        else:
            clustered = layer_support.wrap(model, left_out, lambda l: exp_cluster.cluster_weights(l, **params)) \
                if left_out else exp_cluster.cluster_weights(model, **params)
    train.fit(clustered, x, y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
              stage="cluster", log_dir=log_dir, seed=seed, training=training)
    return tfmot.clustering.keras.strip_clustering(clustered)


def describe(model, sparse_at=0.2, max_clusters=64):
    """What a stripped model is: {'sparse': bool, 'clustered': bool, 'per_channel': bool}.

    Sparse: some kernel has >= `sparse_at` exact zeros (trained dense weights have ~none).
    Clustered: every Conv2D/Dense kernel large enough to tell has <= `max_clusters` distinct values
    per tensor (per-tensor clustering) or per output channel (per-channel clustering).
    """
    sparse, tensor_votes, channel_votes = False, [], []
    for layer, w in _kernels(model):
        sparse |= float(np.mean(w == 0)) >= sparse_at
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            continue  # TFMOT does not cluster depthwise kernels
        # Only kernels with enough weights can tell clustered from not (a 64-weight channel of a
        # dense model has <= 64 distinct values too).
        per_ch = w.reshape(-1, w.shape[-1])
        if w.size > 2 * max_clusters:
            tensor_votes.append(len(np.unique(w)) <= max_clusters)
        if per_ch.shape[0] > 2 * max_clusters:
            channel_votes.append(max(len(np.unique(c)) for c in per_ch.T) <= max_clusters)
    tensor_wise = bool(tensor_votes) and all(tensor_votes)
    channel_wise = bool(channel_votes) and all(channel_votes)
    clustered = tensor_wise or channel_wise
    return {"sparse": sparse, "clustered": clustered, "per_channel": clustered and not tensor_wise}


def pick_scheme(model):
    d = describe(model)
    return {(False, False): "qat", (True, False): "pqat", (False, True): "cqat",
            (True, True): "pcqat"}[(d["sparse"], d["clustered"])]


def _quantize_scheme(scheme):
    combine = tfmot.experimental.combine
    if scheme == "qat":
        return None
    if scheme == "pqat":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=scheme == "pcqat")


@contextlib.contextmanager
def _shared_centroids(per_channel):
    """Keep per-tensor clusters shared across channels during CQAT/PCQAT.

    TFMOT's cluster-preserving quantizer switches a Conv2D kernel to per-channel centroids whenever
    every channel holds about the same number of distinct values - which is the normal case after
    per-tensor clustering. Each channel then trains its own copy of the centroids, the copies drift
    apart, and the INT8 tensor goes from ~K distinct values to ~K x channels: gzip and Vela's weight
    encoder pay for that. A model clustered per tensor keeps one set of centroids per tensor here.
    """
    original = cp_registry.get_centroids
    if per_channel:
        yield
        return

    def per_tensor(layer, weight, data_format):
        centroids, index = cp_registry.get_unique(weight)
        return centroids, tf.size(centroids), index, False

    cp_registry.get_centroids = per_tensor
    try:
        yield
    finally:
        cp_registry.get_centroids = original


def quantize_model(model, scheme="auto", per_channel_clusters=None, left_out=()):
    """Wrap `model` for QAT with the (preserving) scheme, except the layers in `left_out`; returns
    (qat_model, scheme)."""
    schemas.check({"qat": {"scheme": scheme}})
    if scheme == "auto":
        scheme = pick_scheme(model)
    if per_channel_clusters is None:
        per_channel_clusters = describe(model)["per_channel"]
    q = tfmot.quantization.keras
    with tree_paths.refused("TFMOT cannot quantize this model for QAT"):
        annotated = layer_support.quantize_annotated(model, left_out) if left_out else q.quantize_annotate_model(model)
        quantize_scheme = layer_support.KernelsBeforeReLU(
            _quantize_scheme(scheme) or q.default_8bit.Default8BitQuantizeScheme(), layer_support.before_relu(model))
        with _shared_centroids(per_channel_clusters), layer_support.quantize_scope(), \
                layer_support.kernels_before_relu():
            qat_model = q.quantize_apply(annotated, quantize_scheme)
    return qat_model, scheme


def per_tensor_clustered(model, max_clusters=64):
    """Names of the Conv2D/Dense layers whose kernel holds <= max_clusters values in the whole tensor."""
    return [layer.name for layer, w in _kernels(model)
            if not isinstance(layer, keras.layers.DepthwiseConv2D) and w.size > 2 * max_clusters
            and len(np.unique(w)) <= max_clusters]


def share_kernel_ranges(qat_model, layer_names):
    """One quantization range per kernel for the named (per-tensor-clustered) layers.

    Per-channel ranges give each channel its own int8 scale, so one shared centroid becomes a
    different int8 code in each channel (~20 codes per tensor for 8 clusters). With the tensor's
    range in every channel each centroid has one code; the rounding error stays below half a step
    of the largest centroid's scale, far below the distance between centroids.
    """
    for layer in qat_model.layers:
        if getattr(getattr(layer, "layer", None), "name", None) not in layer_names:
            continue
        for w in layer.weights:
            leaf = w.name.split("/")[-1]
            if leaf.startswith(("kernel_min", "kernel_max")) and w.shape.rank == 1 and w.shape[0] > 1:
                v = w.numpy()
                w.assign(np.full_like(v, v.min() if leaf.startswith("kernel_min") else v.max()))


def freeze_left_out(qat_model, left_out):
    """Names of the left-out layers with a kernel, made non-trainable in `qat_model`: a preserving
    scheme keeps zeros and clusters only in the layers it quantizes. Fine-tuned freely, an unrolled
    LSTM's clustered kernels came out with ~350 distinct values (9 per INT8 output channel after one
    epoch, the preservation gate failed the leaf); kept as they are, the converter quantizes them
    post-training with their zeros and clusters."""
    frozen = []
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if inner.name in left_out and any(w.name.split("/")[-1].split(":")[0].endswith("kernel")
                                          for w in inner.trainable_weights):
            layer.trainable = False
            own = getattr(layer, "_trainable_weights", None)
            if own is not None:  # QuantizeWrapperV2 copies its layer's trainable weights into its own list
                inner_ids = {id(w) for w in inner.weights}
                layer._trainable_weights = [w for w in own if id(w) not in inner_ids]  # noqa: SLF001
            frozen.append(inner.name)
    return frozen


def preserving_qat(model, x, y=None, *, scheme=QAT["scheme"], epochs=QAT["epochs"], batch_size=QAT["batch_size"],
                   learning_rate=QAT["learning_rate"], log_dir=None, seed=QAT["seed"], per_channel_clusters=None,
                   left_out=(), training=train.TrainingSpec()):
    """Quantization-aware training, preserving the sparsity and/or clusters `model` has.

    A model clustered per tensor keeps one set of centroids per tensor (`_shared_centroids`) and
    one quantization range per kernel (`share_kernel_ranges`), so the INT8 kernel holds at most
    k codes; per_channel_clusters=True gives TFMOT's own behaviour.
    """
    keras.utils.set_random_seed(seed)
    if per_channel_clusters is None:
        per_channel_clusters = describe(model)["per_channel"]
    qat_model, scheme = quantize_model(model, scheme, per_channel_clusters, left_out)
    log.info("[qat] scheme=%s", scheme)
    frozen = freeze_left_out(qat_model, left_out) if scheme != "qat" else []
    if frozen:
        log.info("[%s] left out of QAT, kept as they are (not fine-tuned): %s", scheme, ", ".join(frozen))
    train.fit(qat_model, x, y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
              stage=scheme, log_dir=log_dir, seed=seed, training=training)
    if scheme in ("cqat", "pcqat") and not per_channel_clusters:
        shared = per_tensor_clustered(model)
        share_kernel_ranges(qat_model, shared)
        log.info("[%s] one quantization range per kernel for %s", scheme, ", ".join(shared))
    return qat_model, scheme
