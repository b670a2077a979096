"""Faults the tests inject into a process of their own (a `collabopt` child of tests/cli_processes.py,
or the test process itself): test support that lives with the tests, not in the library.

Each fault patches the code it interrupts, in that process only:
- `sigkill_after_node(n)`: SIGKILL right after the n-th node the run executes (not cached) is
  published in MLMD;
- `sigkill_after_epoch(stage, n)`: SIGKILL right after epoch n of the fit named `stage`, once its
  epoch checkpoint is on disk;
- `raise_after_epoch(stage, n, exc)`: raise `exc` there instead (in process);
- `oom_after_epoch(stage, n)`: a transient error there (TensorFlow out of memory);
- `sigkill_after_estimates_saved(n)`: SIGKILL right after the search saved its estimates file the
  n-th time (search/estimates.py saves after every measurement);
- `segfault_in_conversion(path)`: the INT8 conversion's child process (core/isolation.py) of the leaf
  `path` kills itself with SIGSEGV, as a native crash in the converter does.
"""
import logging
import os
import signal

log = logging.getLogger("collabopt")


def _sigkill(what):
    log.warning("test fault: SIGKILL after %s", what)
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


def sigkill_after_node(n):
    from tfx.orchestration.portable import launcher

    publish, done = launcher.Launcher._publish_successful_execution, []  # noqa: SLF001

    def publish_then_die(self, execution_id, *args, **kwargs):
        out = publish(self, execution_id, *args, **kwargs)
        done.append(execution_id)
        if len(done) == n:
            _sigkill(f"node {self._pipeline_node.node_info.id}")  # noqa: SLF001
        return out
    launcher.Launcher._publish_successful_execution = publish_then_die  # noqa: SLF001


def _after_epoch(stage, n, then):
    # ProgressLog runs after BackupAndRestore (train.fit puts the backup first): the checkpoint is written
    from collabopt.core.model import train

    end = train.ProgressLog.on_epoch_end

    def end_then(self, epoch, logs=None):
        end(self, epoch, logs)
        if self.stage == stage and epoch + 1 == n:
            then()
    train.ProgressLog.on_epoch_end = end_then
    return lambda: setattr(train.ProgressLog, "on_epoch_end", end)


def sigkill_after_epoch(stage, n):
    _after_epoch(stage, n, lambda: _sigkill(f"epoch {n} of {stage}"))


def raise_after_epoch(stage, n, exc):
    """Returns the function that removes the fault."""
    def fail():
        raise exc
    return _after_epoch(stage, n, fail)


def oom_after_epoch(stage, n):
    """A transient error (TensorFlow out of memory) at the end of epoch `n` of `stage`."""
    from collabopt.core.tfenv import tf

    def fail():
        raise tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating tensor (test fault after epoch {n})")
    return _after_epoch(stage, n, fail)


def sigkill_after_estimates_saved(n):
    from collabopt.search import estimates

    write, done = estimates.write_json, []

    def write_then_die(path, obj):
        write(path, obj)
        done.append(path)
        if len(done) == n:
            _sigkill(f"estimates saved {n} time(s)")
    estimates.write_json = write_then_die


def segfault():
    """Run in the child instead of the conversion (pickled by name: a module-level function)."""
    os.kill(os.getpid(), signal.SIGSEGV)


def segfault_in_conversion(path):
    from collabopt.core import isolation, stages
    from collabopt.pipelines import nodes

    to_tflite, call, armed = stages.to_tflite, isolation.call, []

    def to_tflite_armed(model_path, data_spec, out_dir, **kwargs):
        armed[:] = [f"/{nodes.leaf_ids(path).convert}/" in out_dir]  # the Converter node's output folder
        try:
            return to_tflite(model_path, data_spec, out_dir, **kwargs)
        finally:
            armed.clear()

    def call_or_crash(target, *args, **kwargs):
        if armed and armed[0]:
            log.warning("test fault: SIGSEGV in the INT8 conversion of %s", path)
            return call(segfault, **kwargs)
        return call(target, *args, **kwargs)
    stages.to_tflite, isolation.call = to_tflite_armed, call_or_crash


def install(faults):
    """[(name, args), ...] -> each fault installed in this process."""
    for name, args in faults or ():
        globals()[name](*args)
