"""What every collabopt component shares: data/fit parameters, their validation, and recording
metrics as MLMD custom properties."""
import json
import logging
import os

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.core import stages

# Every model stage reads a standard Model and the Examples it fine-tunes/evaluates on.
MODEL_STAGE_INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model),
                      "examples": ChannelParameter(type=standard_artifacts.Examples)}
DATA_PARAMETERS = {
    "feature_key": ExecutionParameter(type=str),
    "label_key": ExecutionParameter(type=str),
    "feature_shape": ExecutionParameter(type=str),  # JSON list, e.g. "[28, 28, 1]"
    "train_split": ExecutionParameter(type=str),
    "eval_split": ExecutionParameter(type=str),
    "train_limit": ExecutionParameter(type=int),
    "eval_limit": ExecutionParameter(type=int),
}
FIT_PARAMETERS = {
    "epochs": ExecutionParameter(type=int),
    "batch_size": ExecutionParameter(type=int),
    "learning_rate": ExecutionParameter(type=float),
    "seed": ExecutionParameter(type=int),
}


def data_params(feature_key="image", label_key="label", feature_shape=(28, 28, 1), train_split="train",
                eval_split="eval", train_limit=0, eval_limit=0):
    """Validated data parameters, ready for a ComponentSpec."""
    for name, v in (("feature_key", feature_key), ("label_key", label_key),
                    ("train_split", train_split), ("eval_split", eval_split)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    shape = list(feature_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"feature_shape must be a list of positive integers, got {feature_shape!r}")
    for name, v in (("train_limit", train_limit), ("eval_limit", eval_limit)):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0 (0 = whole split), got {v!r}")
    return dict(feature_key=feature_key, label_key=label_key, feature_shape=json.dumps(shape),
                train_split=train_split, eval_split=eval_split, train_limit=train_limit,
                eval_limit=eval_limit)


def fit_params(epochs, batch_size=64, learning_rate=1e-4, seed=0):
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    return dict(epochs=epochs, batch_size=batch_size, learning_rate=float(learning_rate), seed=int(seed))


def single_uri(input_dict, key):
    return artifact_utils.get_single_instance(input_dict[key]).uri


def data_spec(input_dict, props, key="examples"):
    return stages.DataSpec(
        examples_uri=single_uri(input_dict, key), feature_key=props["feature_key"],
        label_key=props["label_key"], feature_shape=tuple(json.loads(props["feature_shape"])),
        train_split=props["train_split"], eval_split=props["eval_split"],
        train_limit=int(props["train_limit"]), eval_limit=int(props["eval_limit"]))


def fit_spec(props):
    return stages.FitSpec(epochs=int(props["epochs"]), batch_size=int(props["batch_size"]),
                          learning_rate=float(props["learning_rate"]), seed=int(props["seed"]))


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


def output(output_dict, key):
    art = artifact_utils.get_single_instance(output_dict[key])
    os.makedirs(art.uri, exist_ok=True)
    return art
