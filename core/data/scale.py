"""data.scale `auto`: the one rule of what integer-valued features are multiplied by. 1/255 (uint8
pixels to [0, 1]) unless the model starts with its own Rescaling/Normalization (keras.applications'
include_preprocessing, a user's Rescaling(1/255)): then the examples go in as stored, or the model
would see them scaled twice. An explicit number is kept as given."""
import logging

from collabopt.core.model import keras_io
from collabopt.schemas.defaults import INT_SCALE

AUTO = "auto"
OWN = ("Rescaling", "Normalization")  # layers that scale the model's input themselves
# Between the input and its first real layer: TFMOT's input quantizer (QAT models)
PASS = ("InputLayer", "QuantizeLayer")
WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2", "PruneLowMagnitude", "ClusterWeights")
log = logging.getLogger("collabopt")
_said = set()  # one log line per process (a local run executes its nodes in one)


def _class(layer):
    """A layer config's class, seen through TFMOT's wrappers (pruned, clustered, QAT models)."""
    while layer.get("class_name") in WRAPPERS and isinstance(layer.get("config", {}).get("layer"), dict):
        layer = layer["config"]["layer"]
    return layer.get("class_name")


def _inbound(layer):
    """Names of the layers a functional layer config reads."""
    names, stack = [], [layer.get("inbound_nodes") or []]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
            names.append(item[0])
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict) and "args" in item:  # Keras 3-style nodes
            stack.append(item["args"])
        elif isinstance(item, dict) and "config" in item and "keras_history" in item["config"]:
            names.append(item["config"]["keras_history"][0])
    return names


def own_rescaling(config):
    """The name of the Rescaling/Normalization layer the model's input goes through first, else None."""
    layers = [(layer.get("config", {}).get("name", layer.get("name")), _class(layer), _inbound(layer))
              for layer in config.get("layers") or []]
    if not any(reads for _, _, reads in layers):  # a Sequential: its first layer past the input
        first = [next(((n, k) for n, k, _ in layers if k not in PASS), (None, None))]
    else:  # a functional model: the layers that read only its inputs (a config lists readers later)
        seen, first = set(), []
        for name, kind, reads in layers:
            if kind == "InputLayer" and not reads or kind in PASS and reads and set(reads) <= seen:
                seen.add(name)
            elif reads and set(reads) <= seen:
                first.append((name, kind))
    return next((name for name, kind in first if kind in OWN), None)


def resolve(scale, model_path=None):
    """The number integer-valued features of the examples fed to the model at `model_path` are
    multiplied by: `scale` if it is a number; for `auto`, 1.0 when the model rescales its own input,
    else 1/255 (also when there is no model to look at)."""
    if scale != AUTO:
        return float(scale)
    layer = own_rescaling(keras_io.model_config(model_path)) if model_path else None
    if layer is None:
        return INT_SCALE
    line = f"data.scale auto: the model rescales its own input (layer {layer!r}), examples fed as stored"
    if line not in _said:
        _said.add(line)
        log.info(line)
    return 1.0
