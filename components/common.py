"""What every collabopt component shares: parameters derived from the config schema and checked by
it (at construction and again at run time), the data/fit specs, and recording metrics as MLMD
custom properties."""
import json
import logging
import os

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt import schemas
from collabopt.components import keys
from collabopt.core import data, stages

# Every model stage reads a standard Model and the Examples it fine-tunes/evaluates on.
MODEL_STAGE_INPUTS = {keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
                      keys.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
DATA_DEFAULTS = {"feature_key": "image", "label_key": "label", "feature_shape": list(data.FASHION_MNIST_SHAPE),
                 "train_split": "train", "eval_split": "eval", "train_limit": 0, "eval_limit": 0}
FIT_KEYS = ("epochs", "batch_size", "learning_rate", "seed")
# The config's `training` section: fine-tuning loss/metrics and the eval metric (core.train.TrainingSpec).
TRAINING_DEFAULTS = {"loss": "auto", "metrics": None, "eval_metric": "accuracy", "top_k": 5}


def _types(section, key):
    t = schemas.load("tree_config")["properties"][section]["properties"][key].get("type", "string")
    return set(t) if isinstance(t, list) else {t}


def parameters(section, names):
    """ExecutionParameters for config keys `section.<name>`, typed from the schema (lists, booleans
    and nullable values travel as JSON strings: TFX parameters are int, float or str)."""
    def kind(name):
        t = _types(section, name)
        if len(t) == 1 and t <= {"integer", "number", "string"}:
            return {"integer": int, "number": float, "string": str}[t.pop()]
        return str
    return {name: ExecutionParameter(type=kind(name)) for name in names}


def placeholder(value):
    """A value known only when the pipeline runs (a TFX RuntimeParameter: a KFP pipeline parameter)."""
    from tfx.orchestration import data_types
    return isinstance(value, data_types.RuntimeParameter)


def encode(section, **values):
    """Check `values` as config keys of `section` (schemas.check: the rule config load applies), then
    encode them for a ComponentSpec. A placeholder passes as it is: the executor's `decode` checks
    the value it stands for at run time."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}  # YAML has lists only
    schemas.check({section: {k: v for k, v in values.items() if not placeholder(v)}})
    spec = parameters(section, values)

    def one(k, v):
        if placeholder(v):
            if v.ptype is not spec[k].type:
                raise schemas.ConfigError(f"{section}.{k}: runtime parameter {v.name!r} is a "
                                          f"{getattr(v.ptype, '__name__', v.ptype)}, this parameter a "
                                          f"{spec[k].type.__name__}")
            return v
        if spec[k].type is not str:
            return spec[k].type(v)
        return "" if v is None else v if isinstance(v, str) else json.dumps(v)  # None travels as ""
    return {k: one(k, v) for k, v in values.items()}


def decode(section, props, names, required=()):
    """The inverse of `encode`, checked again: a bad value that reached the executor fails here with
    the same message as at config load. `required`: names that must not be empty here."""
    missing = [n for n in required if props.get(n) in ("", None)]
    if missing:
        raise schemas.ConfigError("; ".join(f"{section}.{n}: required here, got nothing" for n in missing))
    spec, out = parameters(section, names), {}
    for name in names:
        v = props[name]
        if spec[name].type is str and v in ("", None) and "null" in _types(section, name):
            v = None
        elif spec[name].type is str and "string" not in _types(section, name):
            v = json.loads(v)
        out[name] = v
    schemas.check({section: out})
    return out


DATA_PARAMETERS = parameters("data", DATA_DEFAULTS)


TRAINING_PARAMETERS = parameters("training", TRAINING_DEFAULTS)


def training_params(training=None):
    """Checked, encoded `training` parameters (a config's training section; defaults for what it lacks)."""
    return encode("training", **{**TRAINING_DEFAULTS, **(training or {})})


def training_spec(props):
    from collabopt.core import train
    t = decode("training", props, TRAINING_DEFAULTS)
    return train.TrainingSpec(**{**t, "metrics": tuple(t["metrics"]) if t["metrics"] is not None else None})


def fit_parameters(section):
    return parameters(section, FIT_KEYS)


def data_params(**kwargs):
    """Checked, encoded data parameters (defaults: Fashion-MNIST as our ExampleGen writes it)."""
    return encode("data", **{**DATA_DEFAULTS, **kwargs})


def fit_params(section, epochs, batch_size=64, learning_rate=1e-4, seed=0):
    return encode(section, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)


def single_uri(input_dict, key):
    return artifact_utils.get_single_instance(input_dict[key]).uri


def optional_uri(input_dict, key):
    arts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(arts).uri if arts else None


def data_spec(input_dict, props, key=keys.EXAMPLES_KEY):
    d = decode("data", props, DATA_DEFAULTS)
    return stages.DataSpec(examples_uri=single_uri(input_dict, key), **{**d, "feature_shape": tuple(d["feature_shape"])})


def fit_spec(section, props):
    return stages.FitSpec(**decode(section, props, FIT_KEYS))


def record(artifact, metrics, prefix=""):
    """Scalars become MLMD custom properties (queryable); everything else stays in stats.json."""
    for k, v in metrics.items():
        if isinstance(v, bool):
            artifact.set_int_custom_property(prefix + k, int(v))
        elif isinstance(v, int):
            artifact.set_int_custom_property(prefix + k, v)
        elif isinstance(v, float):
            artifact.set_float_custom_property(prefix + k, v)
        elif isinstance(v, str):
            artifact.set_string_custom_property(prefix + k, v)


def setup_logging():
    """Log through the 'collabopt' logger so fine-tuning progress shows in the component's log."""
    logging.getLogger("collabopt").setLevel(logging.INFO)
    if not logging.getLogger("collabopt").handlers and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)


class StageExecutor(base_executor.BaseExecutor):
    def __init__(self, context=None):
        super().__init__(context)
        setup_logging()

    def resumable(self, input_dict, output, exec_properties):
        """core.train.resumable for this execution's fine-tuning: epoch checkpoints in
        <node folder>/.checkpoint-<key> (the node folder holds <output key>/<execution id>/), the key a
        hash of this executor, its input URIs and its exec properties (what determines the result), so
        a new execution of the same node on the same inputs, after a crash, resumes where the crashed
        one stopped, and nothing else does. Deleted once the stage has written its output."""
        import hashlib

        from collabopt.core import train
        key = json.dumps({"executor": f"{type(self).__module__}.{type(self).__qualname__}",
                          "inputs": {k: sorted(a.uri for a in v) for k, v in input_dict.items()},
                          "properties": {k: str(v) for k, v in exec_properties.items()}}, sort_keys=True)
        node_dir = os.path.dirname(os.path.dirname(output.uri.rstrip("/")))
        return train.resumable(os.path.join(node_dir, ".checkpoint-" + hashlib.sha256(key.encode()).hexdigest()[:16]))


def output(output_dict, key):
    art = artifact_utils.get_single_instance(output_dict[key])
    os.makedirs(art.uri, exist_ok=True)
    return art
