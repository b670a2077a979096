"""`collabopt` commands in child processes, as a user's runs: each dies on its own (SIGKILL included)
and leaves behind only what a real run leaves (MLMD, artifacts, deployments, its log).

The children are forked from a multiprocessing forkserver that imported TensorFlow, TFX, Beam and
collabopt once: a fresh interpreter per command would spend 10-20 s importing, and the crash tests
run about ten commands. The forkserver imports only (no TensorFlow op has run in it), so forking it
is safe; each child then runs `collabopt.cli.main(argv)` with its stdout and stderr in a log file."""
import multiprocessing
import os
import re
import sys

HEAVY = ["collabopt.core.tfenv", "tensorflow_model_optimization", "apache_beam",
         "tfx.orchestration.local.local_dag_runner", "collabopt.components", "collabopt.pipelines.tree",
         "collabopt.core.stages", "collabopt.core.evaluation.beam_eval", "collabopt.runners", "collabopt.mlmd.results", "collabopt.cli"]
RUN_ID = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{6})")
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(HEAVY)
    return _CONTEXT


def _main(argv, log, env, faults):
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        from collabopt.tests import faults as test_faults
        test_faults.install(faults)
        from collabopt.cli import main
        code = main(argv) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code)
    except BaseException:  # noqa: BLE001 - the log shows it, the exit code says it
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Command:
    """A started `collabopt <argv>`; `wait()` returns (exit code, log text); -9 is SIGKILL. `faults`:
    [(name, args)] of tests/faults.py installed in the child first."""

    def __init__(self, argv, log, env=None, faults=()):
        self.log = str(log)
        self.process = _context().Process(target=_main, args=(list(argv), self.log, dict(env or {}), list(faults)))
        self.process.start()

    def wait(self, timeout=600):
        self.process.join(timeout)
        if self.process.is_alive():  # nothing hangs: a hung command fails the test
            self.process.kill()
            self.process.join()
            raise AssertionError(f"collabopt did not finish in {timeout} s; log: {self.log}")
        with open(self.log) as f:
            return self.process.exitcode, f.read()


def _call(target, args, faults):
    import importlib
    from collabopt.tests import faults as test_faults
    test_faults.install(faults)
    module, name = target.split(":")
    getattr(importlib.import_module(module), name)(*args)


def call(target, *args, faults=(), timeout=600):
    """`module:function` called with `args` in a child process (forked like a command's, `faults`
    installed first); returns its exit code (-9: SIGKILL)."""
    p = _context().Process(target=_call, args=(target, args, list(faults)))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError(f"{target} did not finish in {timeout} s")
    return p.exitcode


def collabopt(*argv, log, env=None, timeout=600, faults=()):
    """Run `collabopt <argv>` in a child process: (exit code, log text)."""
    return Command(argv, log, env, faults).wait(timeout)


def run_id(log_text):
    """The run id `collabopt run` printed first."""
    m = RUN_ID.search(log_text)
    assert m, log_text[-3000:]
    return m.group(1)


def printed_table(log_text):
    """The leaf table `collabopt run` printed (header 'path ...' to the blank line after it)."""
    lines = log_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("path  "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]
