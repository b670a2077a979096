"""A user's TFX-style module file (what Trainer/Tuner take as `module_file`): the one loader.

The file defines `input_fn(file_pattern: list[str], batch_size: int, split: str, training: bool)
-> tf.data.Dataset` of `(features, targets)` batches, features an array or a dict keyed by the
model's input names; optionally `loss_fn(model) -> loss` and `metrics_fn() -> list of metrics`.
"""
import functools
import importlib.util
import os

INPUT_FN = "input_fn"
LOSS_FN = "loss_fn"
METRICS_FN = "metrics_fn"
HOOKS = (INPUT_FN, LOSS_FN, METRICS_FN)


class UserModuleError(ValueError):
    """The module file is missing, does not import or lacks input_fn (one line, no field name: the
    caller prefixes it, e.g. `training.module_file: ...`)."""


@functools.lru_cache(maxsize=None)
def load(path):
    """The imported module at `path` (once per process and path); it has a callable `input_fn`, and
    `loss_fn`/`metrics_fn` are callables if present. UserModuleError otherwise."""
    path = str(path)
    if not os.path.isfile(path):
        raise UserModuleError(f"{path!r} is a folder, not a Python file" if os.path.isdir(path)
                              else f"{path!r} does not exist")
    name = "collabopt_user_module_" + str(abs(hash(os.path.abspath(path))))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise UserModuleError(f"{path!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any error of the user's code is reported in one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserModuleError(f"{path!r} does not import: {type(e).__name__}: {first}") from e
    for hook in HOOKS:
        fn = getattr(module, hook, None)
        if fn is None and hook == INPUT_FN:
            raise UserModuleError(f"{path!r} defines no {INPUT_FN}(file_pattern, batch_size, split, training)")
        if fn is not None and not callable(fn):
            raise UserModuleError(f"{path!r}: {hook} is a {type(fn).__name__}, not a function")
    return module


def hook(path, name):
    """The user's `name` hook (LOSS_FN, METRICS_FN, INPUT_FN) of the module at `path`, or None."""
    return getattr(load(path), name, None) if path else None


def problem(path):
    """Why the module file at `path` cannot be used (one line), or None."""
    try:
        load(path)
    except UserModuleError as e:
        return str(e)
    return None
