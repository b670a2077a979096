"""Native code in a child process: a segfault or abort in the TFLite converter's calibrator (seen on a
batch-1 GRU) or in TFLM killed the whole run with no message and no report. In a child, a crash is
one path's failure with a one-line reason (`crash_reason`).

`call` forks the child from a multiprocessing forkserver that imported TensorFlow once (imports only,
no TensorFlow op has run in it, so forking it is safe): a fresh interpreter per call would spend 10-20 s
importing TensorFlow, a fork from the server well under a second. The server starts with `start()` (a
stage calls it before its input checks) and lives as long as this process."""
import contextlib
import multiprocessing
import os
import pickle
import sys
import types

from collabopt.core import tree_paths

# imported once by the forkserver, not by each child
PRELOAD = ["collabopt.core.tflite.convert"]
TIMEOUT_S = 1800  # an unrolled 49-step GRU converts in about a minute; a hung native call must not hang the run


class CrashedError(tree_paths.PathError):
    """The native code died (signal, exit without a result) or hung: the path fails with this reason."""


def crash_reason(what, returncode, stderr=""):
    """'INT8 conversion crashed (signal 11)', or the exit code and the last line of stderr (the
    exception's own line, not the traceback above it)."""
    if returncode is not None and returncode < 0:
        return f"{what} crashed (signal {-returncode})"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"{what} exited {returncode} without a result" + (f": {last}" if last else "")


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # read only when the server starts
    return ctx


def start():
    """Start the forkserver now (it imports TensorFlow in the background; no-op when running): a stage
    calls this before its input checks, so the conversion does not wait for the whole import. The
    server and its children write to /dev/null, not the run's stderr: TensorFlow's C++ start-up lines
    would land after a run's last line, and the converter's native dumps are not the user's one line
    (its errors come back as exceptions, a crash as its signal)."""
    from multiprocessing import forkserver

    _context()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)  # inherited by the server only: restored right after its spawn
            forkserver.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _portable(e):
    """`e`, or a RuntimeError with its text when it does not survive pickling (TF's OpError does not)."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any pickling failure: keep the text
        return RuntimeError(f"{type(e).__name__}: {e}")


def _child(conn, target, args):
    try:
        out = ("ok", target(*args))
    except BaseException as e:  # noqa: BLE001 - the parent re-raises it
        out = ("raised", _portable(e))
    conn.send(out)
    conn.close()


@contextlib.contextmanager
def _without_main_script():
    """multiprocessing makes each child import the parent's main script again (as __mp_main__): a
    user's pipeline script without a `__name__ == "__main__"` guard would run its whole pipeline in
    the child. The targets here live in collabopt's modules, so the child is told of no main script."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def call(target, *args, what, timeout=TIMEOUT_S):
    """target(*args) in a forked child (target and args pickled: a module-level function); its return
    value, or its exception raised here. The child dying or hanging raises CrashedError naming `what`."""
    start()  # no-op when running; else started with its stderr quiet
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, target, args), daemon=True)
    try:
        with _without_main_script():
            child.start()
    except OSError as e:  # the server or the new child died at once: not this path's fault, not cached
        send.close()
        recv.close()
        raise RuntimeError(f"{what}: its child process did not start ({e})") from e
    send.close()  # the child holds the only writer: its death ends recv() with EOFError
    try:
        if not recv.poll(timeout):
            child.kill()
            child.join()
            raise CrashedError(f"{what} did not finish in {timeout} s")
        status, value = recv.recv()
    except EOFError:
        child.join()
        raise CrashedError(crash_reason(what, child.exitcode)) from None
    finally:
        recv.close()
    child.join()
    if status == "raised":
        raise value
    return value


__all__ = ["CrashedError", "crash_reason", "start", "call"]
