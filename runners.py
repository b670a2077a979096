"""Run a pipeline on the embedded default (LocalDagRunner + SQLite MLMD) or TFX's Beam runner, as one
run with its own id (the name of its MLMD `pipeline_run` context), which `run` returns.

With SQLite MLMD a run also keeps its books there: while it runs it holds a lock
(`<folder of the SQLite file>/.runs/<run id>.lock`), so a run is alive exactly while its process
is; before it starts, executions of this pipeline left RUNNING by a run whose process is gone are
marked CANCELED (MLMD has no ABANDONED state) with an `abandoned` custom property saying why; when
it ends, its run context gets `state` (complete | failed) and `ended`, and a failed execution its
error message (`error`), which TFX's launcher does not keep for an executor's exception.
"""
import datetime
import os
import socket
import time
import uuid

RUNNERS = ("local", "beam")


class NodeFailed(Exception):
    """A node of the run failed: `node` (its id) and `error` (what its executor raised, also the cause);
    str() is the error's."""

    def __init__(self, node, error):
        super().__init__(str(error))
        self.node, self.error = node, error


class _DropNoise:
    """Warnings that say nothing to a user, printed dozens of times per run: TFX 1.21 ignoring the
    property predicates its own IR carries for every input; Keras noting that cluster-preserving QAT
    does not train the original kernels (by design: it trains the centroids)."""
    NOISE = ("property_predicate is not supported", "Gradients do not exist for variables")

    def filter(self, record):
        return not any(n in record.getMessage() for n in self.NOISE)


_NOISE = _DropNoise()


def new_run_id():
    """Sortable by start time and unique across processes: 20260101-120000-1a2b3c."""
    return f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run(pipeline, runner="local", *, run_id=None):
    """Run `pipeline` once; returns its run id (`run_id`, or a new one). With the pipeline's cache
    on (create_pipeline(enable_cache=True)), a node whose inputs and parameters match a COMPLETE
    execution reuses its outputs (CACHED), so a rerun after a crash executes only what did not
    finish; components with CACHEABLE = False (their output depends on more than their inputs) run
    every time."""
    import logging

    from collabopt.core import tfenv  # noqa: F401  (TF_USE_LEGACY_KERAS before TFX imports TF)
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).addFilter(_NOISE)  # the same object: added once per process
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    run_id = run_id or new_run_id()
    ir = _compile(pipeline, run_id)
    mlmd = _sqlite(pipeline)
    with _Lease(mlmd, run_id, ir.pipeline_info.id):
        try:
            _run_ir(ir, runner)
        except BaseException as e:
            failed = []
            try:
                failed = _finish(mlmd, run_id, e)
            except Exception:  # noqa: BLE001 - the books must not hide the run's own error
                logging.getLogger("collabopt").warning("could not record the failure in %s", mlmd, exc_info=True)
            if isinstance(e, Exception) and failed:
                raise NodeFailed(failed[0], e) from e
            raise
        _finish(mlmd, run_id, None)
    return run_id


def _compile(pipeline, run_id):
    """The pipeline's IR with our run id in place of the one TFX's runners would make up (they
    substitute only what is still a runtime parameter), and the cache off for uncacheable nodes."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils, tfx_runner

    ir = tfx_runner._make_pipeline_proto(pipeline)  # noqa: SLF001 - what IrBasedRunner.run compiles with
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    uncached = {c.id for c in pipeline.components if not getattr(c, "CACHEABLE", True)}
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in uncached:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir


def _run_ir(ir, runner):
    if runner == "local":
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner
        return LocalDagRunner().run_with_ir(ir)
    from apache_beam.options.pipeline_options import StandardOptions
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
    # TFX orchestrates with beam.Pipeline() and no options: Beam's default DirectRunner would first
    # try to download the Prism runner from the internet. Its fallback, picked directly:
    default, StandardOptions.DEFAULT_RUNNER = StandardOptions.DEFAULT_RUNNER, "FnApiRunner"
    try:
        return BeamDagRunner().run_with_ir(ir)
    finally:
        StandardOptions.DEFAULT_RUNNER = default


def _sqlite(pipeline):
    cfg = pipeline.metadata_connection_config
    return cfg.sqlite.filename_uri if cfg is not None and cfg.HasField("sqlite") else None


class RootError(ValueError):
    """The run folder (--root) is not a folder, or cannot be made."""


def paths(root):
    """(pipeline_root, metadata_path) inside one local folder (made if missing)."""
    root = os.path.abspath(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise RootError(f"root {root!r} is a file, not a folder: give a folder for the run's artifacts and MLMD")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise RootError(f"root {root!r}: cannot make the folder: {e.strerror} ({e.filename})") from None
    return os.path.join(root, "pipeline_root"), os.path.join(root, "metadata.sqlite")


# ------------------------------------------------------------------ a run's books in SQLite MLMD

def _lock_path(mlmd, run_id):
    return os.path.join(os.path.dirname(os.path.abspath(mlmd)), ".runs", f"{run_id}.lock")


def lease(mlmd, run_id):
    """'running' while the process of run `run_id` (of the SQLite MLMD at `mlmd`) holds its lock file;
    'stopped' when the file is there but unlocked (the kernel releases a killed process's lock); None
    when there is no file (a run ends by recording its state and removing it; or collabopt's runners
    did not run it)."""
    import fcntl
    try:
        fd = os.open(_lock_path(mlmd, run_id), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return "stopped"
    except BlockingIOError:
        return "running"
    finally:
        os.close(fd)


def _drop_lease(mlmd, run_id):
    """Remove a dead run's lock file once its state is recorded (unless a process holds it)."""
    import fcntl
    try:
        fd = os.open(_lock_path(mlmd, run_id), os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(_lock_path(mlmd, run_id))
    except BlockingIOError:
        pass
    finally:
        os.close(fd)


class _Lease:
    """The run's lock, held while it runs; taken before it starts, when the executions that dead
    runs of the same pipeline left RUNNING are marked abandoned."""

    def __init__(self, mlmd, run_id, pipeline_name):
        self.mlmd, self.run_id, self.pipeline_name, self.fd = mlmd, run_id, pipeline_name, None

    def __enter__(self):
        import fcntl
        if not self.mlmd:
            return self
        path = _lock_path(self.mlmd, self.run_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        if os.path.exists(self.mlmd):
            try:
                mark_abandoned(self.mlmd, self.pipeline_name, self.run_id)
            except Exception:  # noqa: BLE001 - the books must not stop a run (TFX reports a bad store)
                import logging
                logging.getLogger("collabopt").warning("could not check %s for abandoned runs", self.mlmd,
                                                       exc_info=True)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.unlink(_lock_path(self.mlmd, self.run_id))
            os.close(self.fd)  # releases the lock


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def mark_abandoned(mlmd, pipeline_name, by_run):
    """Executions of `pipeline_name` left NEW or RUNNING by a run whose process is gone (its lock file
    left unlocked) become CANCELED with an `abandoned` custom property, and such a run's context gets
    state 'abandoned' (its lock file is then removed). Runs without a lock file are not judged.
    Returns the ids of the executions marked."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    from collabopt.mlmd import results
    store, marked = results.connect(mlmd, write=True), []
    for ctx in results.runs(store, pipeline_name):
        if ctx.name == by_run or results.RUN_STATE in ctx.custom_properties or lease(mlmd, ctx.name) != "stopped":
            continue
        stale = [e for e in store.get_executions_by_context(ctx.id) if e.last_known_state in (pb.Execution.NEW,
                                                                                             pb.Execution.RUNNING)]
        for e in stale:
            e.last_known_state = pb.Execution.CANCELED
            e.custom_properties[results.ABANDONED].string_value = (
                f"run {ctx.name} stopped while this ran (its process was killed or crashed); "
                f"marked by run {by_run} at {_now()}")
        if stale:
            store.put_executions(stale)
        ctx.custom_properties[results.RUN_STATE].string_value = results.ABANDONED
        store.put_contexts([ctx])
        _drop_lease(mlmd, ctx.name)
        marked += [e.id for e in stale]
    return marked


def _finish(mlmd, run_id, error):
    """The run's end in its context (state, ended); a failure's message on its FAILED execution(s).
    Returns the ids of the nodes that failed (those whose error it is first)."""
    if not mlmd or not os.path.exists(mlmd):
        return []
    from ml_metadata.proto import metadata_store_pb2 as pb

    from collabopt.mlmd import results
    store = results.connect(mlmd, write=True)
    ctx = store.get_context_by_type_and_name(results.RUN_CONTEXT, run_id)
    if ctx is None:  # it failed before any node started
        return []
    names = []
    if error is not None:
        message = f"{type(error).__name__}: {error}"[:4000]
        execs = store.get_executions_by_context(ctx.id)
        failed = [e for e in execs
                  if e.last_known_state == pb.Execution.FAILED and results.ERROR not in e.custom_properties]
        failed = [e for e in failed if results.node_name(store, e) in message] or failed  # Beam: several
        names = [results.node_name(store, e) for e in failed]
        for e in failed:
            e.custom_properties[results.ERROR].string_value = message
        stopped = [e for e in execs if e.last_known_state in (pb.Execution.NEW, pb.Execution.RUNNING)]
        for e in stopped:  # e.g. KeyboardInterrupt: TFX's launcher marks only an Exception FAILED
            e.last_known_state = pb.Execution.CANCELED
            e.custom_properties[results.ABANDONED].string_value = f"run {run_id} stopped while this ran: {message}"
        if failed or stopped:
            store.put_executions(failed + stopped)
    ctx.custom_properties[results.RUN_STATE].string_value = "complete" if error is None else "failed"
    ctx.custom_properties[results.RUN_ENDED].int_value = int(time.time() * 1000)
    store.put_contexts([ctx])
    return names
