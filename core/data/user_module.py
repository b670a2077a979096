"""A user's TFX-style module file (what Trainer/Tuner take as `module_file`): the one loader.

The file defines `input_fn(file_pattern: list[str], batch_size: int, split: str, training: bool)
-> tf.data.Dataset` of `(features, targets)` batches, features an array or a dict keyed by the
model's input names, or a TFX Trainer's `input_fn(file_pattern, data_accessor, tf_transform_output,
batch_size)` (core/tfx_input.py); optionally `loss_fn(model) -> loss` and `metrics_fn() -> list of
metrics`.

The module is user code: whatever importing or calling it raises, SystemExit and KeyboardInterrupt
included, is a UserModuleError naming the file and the function (a Ctrl-C from outside stays one).
It is imported with sys.argv = [its path]: the command line is collabopt's, not the module's.
"""
import contextlib
import functools
import importlib.util
import io
import os
import signal
import sys
import threading

INPUT_FN = "input_fn"
LOSS_FN = "loss_fn"
METRICS_FN = "metrics_fn"
HOOKS = (INPUT_FN, LOSS_FN, METRICS_FN)


class UserModuleError(ValueError):
    """The module file is missing, does not import, lacks input_fn, or one of its functions failed (one
    line, no field name: the caller prefixes it, e.g. `training.module_file: ...`)."""


def _first_line(text):
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def raised(e, printed=""):
    """What user code raised, in a few words: 'it called sys.exit(2) after printing ...', 'Type: why'."""
    if isinstance(e, SystemExit):
        last = [line.strip() for line in printed.splitlines() if line.strip()][-1:]
        return f"it called sys.exit({e.code!r})" + (f" after printing {last[0][:200]!r}" if last else "")
    first = _first_line(e)
    return type(e).__name__ + (f": {first}" if first else "")


class _OwnInterrupt:
    """Tells a Ctrl-C from outside (SIGINT while user code runs) from a KeyboardInterrupt the code
    raises itself: in the main thread, with Python's default handler, SIGINT is noted here first."""

    def __init__(self):
        self.signalled, self._old = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame):
        self.signalled = True
        signal.default_int_handler(signum, frame)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


@contextlib.contextmanager
def boundary(header, capture_stderr=False):
    """Run user code: anything it raises becomes UserModuleError "<header>: <raised(...)>", a Ctrl-C
    from outside excepted (re-raised as KeyboardInterrupt). `capture_stderr`: what the code prints
    to sys.stderr is held back and, if the code exits, quoted instead (e.g. argparse's usage)."""
    printed = io.StringIO()
    with _OwnInterrupt() as interrupt:
        try:
            with contextlib.redirect_stderr(printed) if capture_stderr else contextlib.nullcontext():
                yield
        except UserModuleError:
            raise
        except BaseException as e:  # noqa: BLE001 - user code: SystemExit, KeyboardInterrupt included
            if isinstance(e, KeyboardInterrupt) and interrupt.signalled:
                raise
            raise UserModuleError(f"{header}: {raised(e, printed.getvalue())}") from e
        if printed.getvalue():
            sys.stderr.write(printed.getvalue())


@contextlib.contextmanager
def _argv(path):
    saved = sys.argv
    sys.argv = [path]
    try:
        yield
    finally:
        sys.argv = saved


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
    with _argv(path), boundary(f"{path!r} does not import", capture_stderr=True):
        spec.loader.exec_module(module)
    for hook in HOOKS:
        fn = getattr(module, hook, None)
        if fn is None and hook == INPUT_FN:
            raise UserModuleError(f"{path!r} defines no {INPUT_FN}(file_pattern, batch_size, split, training)")
        if fn is not None and not callable(fn):
            raise UserModuleError(f"{path!r}: {hook} is a {type(fn).__name__}, not a function")
    return module


def call(path, name, *args, **kwargs):
    """The module's function `name` called with the arguments, inside the boundary."""
    fn = getattr(load(path), name)
    with boundary(f"{path!r}: {name}(...) failed"):
        return fn(*args, **kwargs)


def hook(path, name):
    """The user's `name` hook (LOSS_FN, METRICS_FN, INPUT_FN) of the module at `path`, called through
    the boundary, or None."""
    if not path or getattr(load(path), name, None) is None:
        return None
    return functools.partial(call, path, name)


def problem(path):
    """Why the module file at `path` cannot be used (one line), or None."""
    try:
        load(path)
    except UserModuleError as e:
        return str(e)
    return None
