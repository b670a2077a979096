"""What every collabopt component shares: parameters derived from the config schema and checked by
it (at construction and again at run time), the data/fit specs, and recording metrics as MLMD
custom properties."""
import functools
import json
import logging
import os
import time

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt import schemas
from collabopt.schemas import defaults
from collabopt.components import keys
from collabopt.core import stages, tree_paths
from collabopt.core.data import inputs, scale, user_module

# Every model stage reads a standard Model and the Examples it fine-tunes/evaluates on.
MODEL_STAGE_INPUTS = {keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
                      keys.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
DATA_DEFAULTS = defaults.DEFAULTS["data"]
FIT_KEYS = defaults.FIT_KEYS
# The config's `training` section: how the records reach the model (target, module_file: inputs.DataSpec)
# and the fine-tuning loss/metrics and eval metric (core.train.TrainingSpec; a module_file's hooks too).
DATA_TRAINING_KEYS = ("target", "module_file")
TRAINING_DEFAULTS = defaults.DEFAULTS["training"]


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
        elif spec[name].type is str and _types(section, name) & {"number", "integer"}:
            v = _number_or_string(v)
        out[name] = v
    schemas.check({section: out})
    return out


def _number_or_string(v):
    """A value of a number-or-string key (data.scale: 0.5 or auto) as encode wrote it: JSON for a number."""
    try:
        return json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return v


DATA_PARAMETERS = parameters("data", DATA_DEFAULTS)
TRAINING_PARAMETERS = parameters("training", TRAINING_DEFAULTS)


def training_params(training=None):
    """Checked, encoded `training` parameters (a config's training section; defaults for what it lacks)."""
    return encode("training", **{**TRAINING_DEFAULTS, **(training or {})})


def training_spec(props):
    """core.train.TrainingSpec of the `training` parameters, with the module_file's loss_fn/metrics_fn."""
    from collabopt.core.model import train
    t = decode("training", props, TRAINING_DEFAULTS)
    module = t["module_file"]
    return train.TrainingSpec(
        loss=t["loss"], metrics=tuple(t["metrics"]) if t["metrics"] is not None else None,
        eval_metric=t["eval_metric"], top_k=t["top_k"], loss_fn=user_module.hook(module, user_module.LOSS_FN),
        metrics_fn=user_module.hook(module, user_module.METRICS_FN))


def fit_parameters(section):
    return parameters(section, FIT_KEYS)


def data_params(**kwargs):
    """Checked, encoded data parameters (defaults: Fashion-MNIST as our ExampleGen writes it); a key
    not of the section is a ConfigError naming `data`."""
    return encode("data", **{**DATA_DEFAULTS, **kwargs})


def fit_params(section, epochs, batch_size, learning_rate, seed):
    return encode(section, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)


def single_uri(input_dict, key):
    return artifact_utils.get_single_instance(input_dict[key]).uri


def optional_uri(input_dict, key):
    arts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(arts).uri if arts else None


def data_spec(input_dict, props, key=keys.EXAMPLES_KEY):
    t = decode("training", props, TRAINING_DEFAULTS)
    d = {**decode("data", props, DATA_DEFAULTS), **{k: t[k] for k in DATA_TRAINING_KEYS}}
    d["scale"] = scale.resolve(d["scale"], optional_uri(input_dict, keys.MODEL_KEY))
    return inputs.DataSpec(examples_uri=single_uri(input_dict, key), **{**d, "feature_shape": tuple(d["feature_shape"])})


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


def node_id(executor):
    """The execution's pipeline node id (e.g. Convert_ptq), else its component's class name."""
    node = getattr(getattr(executor, "_context", None), "pipeline_node", None)
    if node is not None and node.node_info.id:
        return node.node_info.id
    from collabopt import components
    folder = type(executor).__module__.split(".")[-2]  # collabopt.components.<folder>.executor
    return next((name for name, where in components._WHERE.items()  # noqa: SLF001
                 if where.startswith(folder + ".")), folder)


def announced(do):
    """An executor's Do that logs when its node starts and how long it took: a long run says where it
    is (a cached node does not run, so it says nothing)."""
    @functools.wraps(do)
    def logged(self, input_dict, output_dict, exec_properties):
        from collabopt.core.progress import duration
        name, started = node_id(self), time.monotonic()
        logging.getLogger("collabopt").info("%s: started", name)
        result = do(self, input_dict, output_dict, exec_properties)
        logging.getLogger("collabopt").info("%s: done in %s", name, duration(time.monotonic() - started))
        return result
    return logged


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

        from collabopt.core.model import train
        key = json.dumps({"executor": f"{type(self).__module__}.{type(self).__qualname__}",
                          "inputs": {k: sorted(a.uri for a in v) for k, v in input_dict.items()},
                          "properties": {k: str(v) for k, v in exec_properties.items()}}, sort_keys=True)
        node_dir = os.path.dirname(os.path.dirname(output.uri.rstrip("/")))
        return train.resumable(os.path.join(node_dir, ".checkpoint-" + hashlib.sha256(key.encode()).hexdigest()[:16]))


def output(output_dict, key):
    art = artifact_utils.get_single_instance(output_dict[key])
    os.makedirs(art.uri, exist_ok=True)
    return art


# ---------------------------------------------------------------- one path's failure
# Only a path's own failure that the same inputs would meet again (core.tree_paths.PathError: TFMOT,
# the converter or Vela refusing the model, `strict` layer checks) marks the path failed and is cached
# as a result. Anything else - bad input every path shares, a config mistake, a broken module_file, the
# machine (files, memory, a service), the deployed tree - fails the execution: not cached, tried again.
MAX_ERROR = 1000  # characters of a failure's one-line reason


def marked_failed(artifact):
    return artifact.has_custom_property(keys.FAILED) and artifact.get_int_custom_property(keys.FAILED) == 1


def failure(input_dict, keys_=None):
    """The `error` of the first input artifact (of `keys_`, default all) marked failed, else None."""
    for key in keys_ if keys_ is not None else input_dict:
        for a in input_dict.get(key) or []:
            if marked_failed(a):
                return a.get_string_custom_property(keys.ERROR)
    return None


def reason(exc):
    """An exception as one line: collabopt's own in its words, others (TFMOT's, TF's) with their type."""
    text = " ".join(str(exc).split())
    if not type(exc).__module__.startswith("collabopt."):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 3] + "..."


class PathStage:
    """Mixin of the executors of a path's own nodes, whose `stage` does the work. Like TFX's Pusher
    ("not pushed") and Evaluator ("not blessed"), a path that failed is an outcome, not a failed
    execution: on KFP a FAILED task would stop every downstream task, the other paths' and the report
    included. So when `stage` raises a PathError (the path's own, deterministic failure), it is logged
    and every output is marked `failed` = 1 with `error` = "<node>: <reason>"; a node with an input
    marked failed does no work and passes that error on. The execution is COMPLETE: TFX's cache keeps
    the failure (the same inputs and parameters meet it again, as a "not blessed" is kept) and
    `collabopt run --no-cache` executes it again. Any other error fails the execution (not cached)."""
    REFERENCE_INPUTS = ()  # inputs that are not this path's (LeafEvaluator's baseline): they do not pass on

    @announced
    def Do(self, input_dict, output_dict, exec_properties):
        setup_logging()
        error = failure(input_dict, [k for k in input_dict if k not in self.REFERENCE_INPUTS])
        if error is None:
            try:
                return self.stage(input_dict, output_dict, exec_properties)
            except tree_paths.PathError as e:  # the path's own failure: reported, the others go on
                error = f"{self.node_id()}: {reason(e)}"
                logging.getLogger("collabopt").warning("path failed: %s", error, exc_info=True)
        else:
            # the reason was logged once, by the node that failed (the error starts with its id)
            logging.getLogger("collabopt").warning("%s: skipped, %s failed", self.node_id(), error.split(": ", 1)[0])
        self.failed(input_dict, output_dict, exec_properties, error)
        return None

    def failed(self, input_dict, output_dict, exec_properties, error):
        """Mark every output failed (a node with more to say about a failure overrides this)."""
        for arts in output_dict.values():
            for a in arts:
                os.makedirs(a.uri, exist_ok=True)
                record(a, {keys.FAILED: 1, keys.ERROR: error})

    def node_id(self):
        return node_id(self)
