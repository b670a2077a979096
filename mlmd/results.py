"""Read a run's numbers back from ML Metadata (nothing is recomputed) and print them as a table."""
import json

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from collabopt.components import keys
from collabopt.core.evaluation import metrics
from collabopt.core.firmware import device_check

STATE = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
RUN_CONTEXT = "pipeline_run"  # a run's MLMD context type; its name is the run id
# Custom properties runners.py records (MLMD has no ABANDONED execution state: CANCELED + why)
RUN_STATE = "state"           # run context: complete | failed | abandoned
RUN_ENDED = "ended"           # run context: milliseconds since the epoch
ERROR = "error"               # FAILED execution: its error message
ABANDONED = "abandoned"       # CANCELED execution: why (its run's process died)
TFX_RESULT = "__execution_result__"  # TFX's launcher: an ExecutionResult as JSON, for its own failures


MLMD_TABLES = ("MLMDEnv", "Type", "Context", "Execution", "Artifact")  # what ML Metadata's schema has


def not_a_store(metadata_path):
    """Why the file at `metadata_path` is not a SQLite ML Metadata store; None when it looks like one.
    Read with sqlite3 (read-only): MLMD itself would try to create its tables in any SQLite file."""
    import contextlib
    import pathlib
    import sqlite3
    uri = pathlib.Path(metadata_path).absolute().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        return f"not an SQLite database ({e})"
    missing = [t for t in MLMD_TABLES if t not in tables]
    if missing:
        found = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "") or "none"
        return f"an SQLite database without ML Metadata's tables ({', '.join(missing)}; its tables: {found})"
    return None


def connect(metadata_path, write=False):
    """The SQLite MLMD store at `metadata_path`, read-only unless `write` (runners.py's books)."""
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = str(metadata_path)
    mode = metadata_store_pb2.SqliteMetadataSourceConfig
    cfg.sqlite.connection_mode = mode.READWRITE_OPENCREATE if write else mode.READONLY
    return metadata_store.MetadataStore(cfg)


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "struct_value":
        return json.loads(json.dumps(dict(v.struct_value)))
    return getattr(v, kind) if kind else None


def props(artifact):
    return {k: _value(v) for k, v in artifact.custom_properties.items()}


def pipeline_of(store, run):
    return next((p.name for p in store.get_parent_contexts_by_context(run.id)), None)


def runs(store, pipeline_name=None):
    """The run contexts (of one pipeline, or all), oldest first."""
    found = store.get_contexts_by_type(RUN_CONTEXT)
    if pipeline_name:
        found = [r for r in found if pipeline_of(store, r) == pipeline_name]
    return sorted(found, key=lambda c: (c.create_time_since_epoch, c.id))


def latest_run(store, pipeline_name=None):
    found = runs(store, pipeline_name)
    if not found:
        raise LookupError("no pipeline run in this MLMD store" + (f" for {pipeline_name!r}" if pipeline_name else ""))
    return found[-1]


def run_by_id(store, run_id):
    ctx = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if ctx is None:
        raise LookupError(f"no run {run_id!r} in this MLMD store (collabopt runs lists them)")
    return ctx


def node_name(store, execution):
    """The pipeline node an execution ran (its `node` context: '<pipeline>.<node id>')."""
    return next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                 if store.get_context_types_by_id([c.type_id])[0].name == "node"), execution.name)


def reason(execution):
    """Why an execution failed or was abandoned (None if it did neither, or nobody recorded why)."""
    p = execution.custom_properties
    for key in (ERROR, ABANDONED):
        if key in p:
            return p[key].string_value
    if TFX_RESULT in p:  # a traceback: its last line names the exception
        message = json.loads(p[TFX_RESULT].string_value).get("resultMessage", "").strip()
        return message.splitlines()[-1] if message else None
    return None


def executions(store, run=None):
    """[{node, state, reason, outputs: {key: [artifact]}}] of one run (the latest by default), in run order."""
    run = run or latest_run(store)
    out = []
    for ex in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = node_name(store, ex)
        events = store.get_events_by_execution_ids([ex.id])
        outs = {}
        for e in events:
            if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT):
                key = e.path.steps[0].key if e.path.steps else "?"
                outs.setdefault(key, []).append(e.artifact_id)
        arts = {a.id: a for a in store.get_artifacts_by_id([i for ids in outs.values() for i in ids])}
        out.append({"id": ex.id, "node": node, "state": STATE.get(ex.last_known_state, "?"), "reason": reason(ex),
                    "outputs": {k: [arts[i] for i in ids if i in arts] for k, ids in outs.items()}})
    return out


def run_state(store, run, execs=None, lease=None):
    """complete | failed | running | abandoned: what the run recorded when it ended (or what a later
    run found: abandoned); else, by `lease(run id)` (runners.lease), running while its process holds
    its lock, abandoned (or failed) once it died; a run without a lock (not run by collabopt's
    runners, e.g. an emulated KFP run) by its executions."""
    if RUN_STATE in run.custom_properties:
        return run.custom_properties[RUN_STATE].string_value
    held = lease(run.name) if lease else None
    if held == "running":
        return "running"
    states = {e["state"] for e in (executions(store, run) if execs is None else execs)}
    if "FAILED" in states:
        return "failed"
    if held == "stopped" or "CANCELED" in states:
        return ABANDONED
    return "running" if states & {"NEW", "RUNNING"} else "complete"


def problems(execs):
    """[(node, state, reason)] of a run's FAILED and CANCELED (abandoned) executions."""
    return [(e["node"], e["state"], e["reason"] or "no reason recorded") for e in execs
            if e["state"] in ("FAILED", "CANCELED")]


def run_summaries(store, pipeline_name=None, lease=None):
    """[{run, pipeline, started, state, leaves, problems, failed_paths}] of every run (of one pipeline),
    oldest first; `leaves` counts those that did not fail."""
    import datetime
    out = []
    for run in runs(store, pipeline_name):
        execs = executions(store, run)
        found = leaves(store, run, execs)
        ok = [l for l in found if not l[keys.FAILED]]
        out.append({"run": run.name, "pipeline": pipeline_of(store, run),
                    "started": datetime.datetime.fromtimestamp(run.create_time_since_epoch / 1000).isoformat(
                        sep=" ", timespec="seconds"),
                    "state": run_state(store, run, execs, lease), "leaves": len(ok),
                    "problems": problems(execs), "failed_paths": [l["path"] for l in found if l[keys.FAILED]]})
    return out


def runs_table(summaries):
    head = ("run", "pipeline", "started", "state", "leaves", "failed / abandoned")
    lines = [head] + [(s["run"], s["pipeline"], s["started"], s["state"], str(s["leaves"]),
                       ", ".join([node for node, _, _ in s["problems"]] + [f"path:{p}" for p in s["failed_paths"]])
                       or "-") for s in summaries]
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def problems_text(execs):
    """One line per FAILED / ABANDONED (CANCELED) node of a run, with its reason ('' if none)."""
    return "\n".join(f"{'ABANDONED' if state == 'CANCELED' else state} {node}: {' '.join(why.split())}"
                     for node, state, why in problems(execs))


COLUMNS = ("stage", "state", "metric", "int8_metric", "bytes -> gzip", "saving", "sparsity", "uniq/ch",
           "uniq/tensor", "npu_cycles", "npu_ops")


def stage_rows(execs):
    rows = []
    for ex in execs:
        for key, arts in ex["outputs"].items():
            for a in arts:
                p = props(a)
                rows.append({
                    "stage": ex["node"], "state": ex["state"], "uri": a.uri, "output": key,
                    "eval_metric": p.get("eval_metric") or metrics.ACCURACY,
                    "metric": p.get("metric", p.get("accuracy")),
                    "int8_metric": p.get("int8_metric", p.get("int8_accuracy")),
                    "accuracy": p.get("accuracy"), "int8_accuracy": p.get("int8_accuracy"),
                    "tflite_bytes": p.get("tflite_bytes"), "gzip_bytes": p.get("gzip_bytes"),
                    "saving_pct": p.get("saving_pct"), "sparsity": p.get("sparsity"),
                    "max_unique_per_channel": p.get("max_unique_per_channel"),
                    "max_unique_per_tensor": p.get("max_unique_per_tensor"),
                    "npu_cycles": p.get("npu_cycles"), "npu_op_pct": p.get("npu_op_pct"),
                    "properties": p})
        if not ex["outputs"]:
            rows.append({"stage": ex["node"], "state": ex["state"], "properties": {}})
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows):
    lines = [COLUMNS]
    for r in rows:
        size = (f"{r['tflite_bytes']:,} -> {r['gzip_bytes']:,}" if r.get("tflite_bytes") else "-")
        name = r.get("eval_metric") or metrics.ACCURACY
        lines.append((r["stage"], r["state"], metrics.fmt(name, r.get("metric")),
                      metrics.fmt(name, r.get("int8_metric")),
                      size, _fmt(r.get("saving_pct"), ".2f") + ("%" if r.get("saving_pct") is not None else ""),
                      _fmt(r.get("sparsity"), ".1%"), _fmt(r.get("max_unique_per_channel"), "d"),
                      _fmt(r.get("max_unique_per_tensor"), "d"), _fmt(r.get("npu_cycles"), ",d"),
                      _fmt(r.get("npu_op_pct"), ".0f") + ("%" if r.get("npu_op_pct") is not None else "")))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in lines)


LEAF_FIELDS = ("path", "eval_metric", "top_k", "fp32_metric", "int8_metric", "baseline_int8_metric", "metric_drop",
               "fp32_accuracy", "int8_accuracy", "int8_accuracy_drop_pp", "tflite_bytes", "gzip_bytes",
               "saving_pct", "sparsity", "max_unique_per_channel", "max_unique_per_tensor", *device_check.FIELDS,
               "blessed")
NPU_FIELDS = {"cycles": "npu_cycles", "inference_time_s": "inference_time_s", "flash_bytes": "flash_bytes",
              "dram_bytes": "dram_bytes", "sram_bytes": "sram_bytes", "npu_op_pct": "npu_op_pct"}


def leaves(store, run=None, execs=None):
    """Every evaluated leaf of a run (the latest by default), from MLMD properties alone:
    LEAF_FIELDS, 'reasons', 'npu': {target: NPU_FIELDS, per_layer, cpu_operators}, 'pushed' (its Push_<path> node deployed it,
    in this run or, CACHED, in the run it reuses), 'uri' (the LeafEvaluation folder), 'failed' and
    'error' (a path whose node failed: its numbers are None, 'error' names the node and why)."""
    execs = executions(store, run) if execs is None else execs
    pushed = {e["node"][len("Push_"):] for e in execs if e["node"].startswith("Push_")
              and e["state"] in ("COMPLETE", "CACHED")
              and any(props(a).get(keys.PUSHED) == 1 for a in e["outputs"].get(keys.PUSHED_MODEL_KEY, []))}
    out = []
    for ex in execs:
        for art in ex["outputs"].get(keys.EVALUATION_KEY, []):
            p = props(art)
            if keys.PATH not in p:
                continue
            targets = [t for t in (p.get(keys.NPU_TARGETS) or "").split(",") if t]
            leaf = {k: p.get(k) for k in LEAF_FIELDS}
            leaf["blessed"] = bool(leaf[keys.BLESSED])
            leaf["reasons"] = json.loads(p.get(keys.REASONS) or "[]")
            leaf[keys.EXCLUDED_LAYERS] = json.loads(p.get(keys.EXCLUDED_LAYERS) or "{}")
            leaf["npu"] = {t: {**{k: p.get(f"{t}.{v}") for k, v in NPU_FIELDS.items()},
                               **{k: json.loads(p.get(f"{t}.{k}") or "null") for k in (keys.PER_LAYER, keys.CPU_OPERATORS)}}
                           for t in targets}
            leaf["pushed"] = leaf["path"] in pushed
            leaf["state"], leaf["uri"] = ex["state"], art.uri
            leaf[keys.FAILED], leaf[keys.ERROR] = bool(p.get(keys.FAILED)), p.get(keys.ERROR)
            out.append(leaf)
    from collabopt.core import tree_paths  # no heavy imports: the paths only
    order = list(tree_paths.PATHS)
    return sorted(out, key=lambda l: order.index(l["path"]) if l["path"] in order else len(order))


def failed_text(rows):
    """One line per failed path of `leaves` rows, with its node and why ('' if none failed)."""
    return "\n".join(f"FAILED path {r['path']}: {r[keys.ERROR]}" for r in rows if r.get(keys.FAILED))


def leaf_table(rows):
    """The table of the leaves that did not fail (failed_text lists the others)."""
    rows = [r for r in rows if not r.get(keys.FAILED)]
    targets = []
    for r in rows:
        targets += [t for t in r["npu"] if t not in targets]
    name = (rows[0].get("eval_metric") if rows else None) or metrics.ACCURACY
    what = "" if name == metrics.ACCURACY else " " + metrics.title(name, rows[0].get("top_k") or 5)
    head = ("path", "fp32" + what, "int8" + what, "drop pp" if metrics.get(name).fraction else "drop",
            "bytes -> gzip", "saving", "sparsity", "uniq/ch", "arena", "tflm lsb",
            *(f"{t} cycles" for t in targets), "blessed")
    lines = [head]
    for r in rows:
        _, fp32 = metrics.of_leaf(r, "fp32_")
        _, int8 = metrics.of_leaf(r)
        drop = r["metric_drop"] if r["metric_drop"] is not None else (
            r["int8_accuracy_drop_pp"] / 100 if r["int8_accuracy_drop_pp"] is not None else None)
        lines.append((r["path"], metrics.fmt(name, fp32), metrics.fmt(name, int8),
                      metrics.fmt_drop(name, drop, "+").removesuffix(" pp"),
                      f"{r['tflite_bytes']:,} -> {r['gzip_bytes']:,}",
                      _fmt(r["saving_pct"], ".2f") + "%", _fmt(r["sparsity"], ".1%"),
                      _fmt(r["max_unique_per_channel"], "d"), _fmt(r.get(device_check.ARENA_BYTES), ",d"),
                      _fmt(r.get("tflm_max_lsb"), "d"),
                      *(_fmt(r["npu"].get(t, {}).get("cycles"), ",d") for t in targets),
                      "yes" if r["blessed"] else "no: " + "; ".join(r["reasons"])))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
