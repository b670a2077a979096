"""Which layers each TFMOT technique can handle, decided before any fine-tuning, and wrapping a model
for a technique with some layers left out.

A layer TFMOT cannot prune, cluster or quantize used to abort the whole run with TFMOT's raw error,
after minutes of earlier stages. Here every such layer is named at once, per technique: by default it
is left out of that technique (the path still runs and the layer is reported), with `strict` the
stage fails listing them all. Layers the user excludes by name or regex are left out the same way.
"""
import contextlib
import re

from collabopt.core import tree_paths
from collabopt.core.tfenv import keras

import tensorflow_model_optimization as tfmot  # noqa: E402  (after tfenv: needs tf_keras)
from tensorflow_model_optimization.python.core.clustering.keras import (  # noqa: E402
    clusterable_layer, clustering_registry)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_configs, default_8bit_quantize_registry, default_8bit_transforms)
from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    prunable_layer, prune_registry)

TECHNIQUES = ("prune", "cluster", "qat")
# Weightless merge layers TFMOT's 8-bit registry has no config for: QAT quantizes their output, as
# TFMOT does its Add. Left float, MobileNetV3's hard-swish Multiply before a squeeze-excite on a 1x1
# map (32x32 input) came out of the converter as a float MUL between DEQUANTIZE / QUANTIZE.
OUTPUT_ONLY = (keras.layers.Multiply,)
# TFMOT folds a BatchNormalization into the Conv2D/DepthwiseConv2D/Dense it follows, and only there.
_FOLDS_INTO = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


class UnsupportedLayersError(tree_paths.PathError, ValueError):
    """`strict`: the model has layers the technique cannot handle; the message lists every one."""


def _inbound(layer):
    return [n.inbound_layers for n in layer._inbound_nodes]  # noqa: SLF001 - Keras has no public graph API


def _bn_folds(layer):
    (parents,) = _inbound(layer) or [None]
    parent = parents[0] if isinstance(parents, list) and len(parents) == 1 else parents
    return isinstance(parent, _FOLDS_INTO) and len(parent._outbound_nodes) == 1  # noqa: SLF001


def is_op_layer(layer):
    """A functional TF op in a Keras model (TFOpLambda, SlicingOpLambda: `x + 3.0`, `tf.nn.relu6(x)`,
    MobileNetV3's hard-swish and squeeze-excite): no weights, and TFMOT's wrappers cannot call it."""
    return getattr(layer, "_preserve_input_structure_in_config", False)


def _why_not(layer, technique):
    """Why `technique` cannot handle `layer`, or None."""
    kind = type(layer).__name__
    if is_op_layer(layer):
        return f"{kind} {layer.get_config().get('function')} has no weights: passed through as it is"
    if technique == "prune":
        ok = prune_registry.PruneRegistry.supports(layer) or isinstance(layer, prunable_layer.PrunableLayer)
        return None if ok else f"{kind} is not in TFMOT's pruning registry"
    if technique == "cluster":
        ok = clustering_registry.ClusteringRegistry.supports(layer) or isinstance(
            layer, clusterable_layer.ClusterableLayer)
        return None if ok else f"{kind} is not in TFMOT's clustering registry"
    if isinstance(layer, keras.layers.BatchNormalization):
        return None if _bn_folds(layer) else \
            "a BatchNormalization that does not follow a Conv2D/DepthwiseConv2D/Dense cannot be folded for QAT"
    ok = default_8bit_quantize_registry.Default8BitQuantizeRegistry().supports(layer) or isinstance(layer, OUTPUT_ONLY)
    return None if ok else f"{kind} is not in TFMOT's 8-bit quantization registry"


def unsupported(model, technique):
    """{layer name: why} for every layer of `model` that `technique` cannot handle."""
    if technique not in TECHNIQUES:
        raise ValueError(f"technique must be one of {TECHNIQUES}, got {technique!r}")
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        why = _why_not(layer, technique)
        if why:
            out[layer.name] = why
    return out


def plan(model, technique, exclude_layers=(), strict=False):
    """{layer name: why it is left out of `technique`}: what the user excluded (names or regexes,
    matched whole) and what TFMOT cannot handle. With `strict`, unsupported layers that the user did
    not exclude raise UnsupportedLayersError naming them all."""
    patterns = [re.compile(p) for p in exclude_layers]
    excluded = {l.name: f"excluded by {technique}.exclude_layers" for l in model.layers
                if any(p.fullmatch(l.name) for p in patterns)}
    missing = {n: why for n, why in unsupported(model, technique).items() if n not in excluded}
    if strict and missing:
        raise UnsupportedLayersError(
            f"{technique}: {len(missing)} layer(s) TFMOT cannot {_VERB[technique]} (strict: true): "
            + "; ".join(f"{n} ({why})" for n, why in missing.items())
            + f". Exclude them with {technique}.exclude_layers, or drop strict to leave them out.")
    return {**excluded, **missing}


_VERB = {"prune": "prune", "cluster": "cluster", "qat": "quantize"}


def wrap(model, left_out, wrapper):
    """`model` with `wrapper(layer)` around every layer not in `left_out` and not an InputLayer; the
    other layers are the same objects (shared weights, as TFMOT's own whole-model wrapping does)."""
    def clone(layer):
        if layer.name in left_out or isinstance(layer, keras.layers.InputLayer):
            return layer
        return wrapper(layer)
    return keras.models.clone_model(model, clone_function=clone)


class LeftOut(tfmot.quantization.keras.QuantizeConfig):
    """The QAT config of a left-out layer: nothing quantized, it stays float in the QAT model (the INT8
    converter calibrates it like any PTQ layer). Annotating it explicitly keeps TFMOT's preserving
    schemes from trying to quantize its output with a config they do not have."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def before_relu(model):
    """Names of the Conv2D/DepthwiseConv2D/Dense layers that feed a ReLU layer: TFMOT's LayerReLUQuantize
    transform gives them a no-op QAT config, which drops their kernel's quantizer too (`quantize_annotated`)."""
    def is_relu(layer):
        return isinstance(layer, keras.layers.ReLU) or (
            isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "relu")
    return {p.name for layer in model.layers if is_relu(layer) for parents in _inbound(layer)
            for p in (parents if isinstance(parents, list) else [parents]) if isinstance(p, _FOLDS_INTO)}


def quantize_annotated(model, left_out):
    """The model annotated for QAT; the layers in `left_out` and those the 8-bit scheme cannot handle
    are annotated with LeftOut; functional TF ops (`is_op_layer`) are not annotated: a QuantizeAnnotate
    wrapper cannot call them, and unannotated they stay float like a LeftOut layer."""
    skip = set(left_out) | set(unsupported(model, "qat"))
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def one(layer):
        if is_op_layer(layer):
            return layer
        if layer.name in skip:
            return annotate(layer, quantize_config=LeftOut())
        if isinstance(layer, OUTPUT_ONLY):
            return annotate(layer, quantize_config=default_8bit_quantize_configs.Default8BitOutputQuantizeConfig())
        return annotate(layer)
    return wrap(model, (), one)


@contextlib.contextmanager
def kernels_before_relu():
    """TFMOT's LayerReLUQuantize (Add/Conv2D/Dense -> ReLU) gives the layer before the ReLU a no-op QAT
    config, to keep a fake-quant off the edge into the ReLU; for a kernel layer that also leaves the
    kernel unquantized, so QAT trains it freely (a PCQAT path loses that layer's sparsity and clusters)
    and the converter calibrates it like PTQ. In this block only an Add gets the no-op; a kernel layer
    keeps its scheme's config, without the output quantizer (`KernelsBeforeReLU`)."""
    original = default_8bit_transforms.LayerReLUQuantize.replacement

    def replacement(self, match_layer):
        if match_layer.input_layers[0].layer["class_name"] == "Add":
            return original(self, match_layer)
        return match_layer

    default_8bit_transforms.LayerReLUQuantize.replacement = replacement  # LayerReluActivationQuantize inherits it
    try:
        yield
    finally:
        default_8bit_transforms.LayerReLUQuantize.replacement = original


class KernelsBeforeReLU(tfmot.quantization.keras.QuantizeScheme):
    """`scheme` whose configs for the kernel layers that feed a ReLU (`before_relu`) quantize no output:
    what TFMOT's no-op config meant, with the kernel still quantized (see `kernels_before_relu`)."""

    def __init__(self, scheme, names):
        self.scheme, self.names = scheme, set(names)

    def get_layout_transformer(self):
        return self.scheme.get_layout_transformer()

    def get_quantize_registry(self):
        return _NoOutputRegistry(self.scheme.get_quantize_registry(), self.names)


class _NoOutputRegistry:
    def __init__(self, registry, names):
        self.registry, self.names = registry, names

    def supports(self, layer):  # the preserving registries claim TF ops, then have no config for them
        return not is_op_layer(layer) and self.registry.supports(layer)

    def get_quantize_config(self, layer):
        config = self.registry.get_quantize_config(layer)
        if layer.name in self.names:
            config.activation_attrs, config.quantize_output = [], False
        return config


def quantize_scope():
    """What Keras needs to load a QAT model with left-out layers (next to TFMOT's own scope)."""
    return tfmot.quantization.keras.quantize_scope({"LeftOut": LeftOut})
