"""`collabopt search` locally: the reference leaf, the estimates (search/estimates.py), then rounds of
trial pipelines (search/trials.py) driven by the configured strategy (search/halving.py,
search/prefix.py, search/auto.py), and the record and report.

Every round is a TFX run on the same MLMD with the cache on: a search started again reruns the
reference and the rounds it had reached, and every trial that finished comes back CACHED; the
estimates come back from search_estimates.json. The wall-time budget holds at every step: a search
out of time answers with what it has, the reference (ptq) leaf at least.
"""
import os
import time

from collabopt import runners
from collabopt.components import keys
from collabopt.core import tree_paths
from collabopt.core.artifact_files import ERROR, FAILED, read_leaf
from collabopt.core.evaluation import gates
from collabopt.mlmd import results
from collabopt.pipelines import config as tree_config
from collabopt.search import auto, estimates as search_estimates, halving, prefix, space, trials
from collabopt.search.record import KEEP_RATIO

RECORD_FILE = "search.json"
REPORT_FILE = "search.html"
ESTIMATES_FILE = search_estimates.ESTIMATES_FILE
STRATEGIES = {"halving": halving.run, "prefix": prefix.run, "auto": auto.run}


def _events(store, execution_id, kinds):
    from ml_metadata.proto import metadata_store_pb2 as pb
    want = {getattr(pb.Event, k) for k in kinds}
    ev = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in want]
    arts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in ev])}
    return {e.path.steps[0].key: arts[e.artifact_id].uri for e in ev if e.path.steps}


def _run_round(cfg, candidates, epochs, root, mlmd, runner, resume=None):
    """Run one round; returns (the trials.Round, {node id: (state, {output key: uri}, {input key: uri})},
    run id)."""
    rnd = trials.create_round(cfg, candidates, epochs, root, mlmd, resume=resume)
    run_id = runners.run(rnd.pipeline, runner)
    store = results.connect(mlmd)
    nodes = {}
    for ex in results.executions(store, results.run_by_id(store, run_id)):
        nodes[ex["node"]] = (ex["state"], _events(store, ex["id"], ("OUTPUT", "DECLARED_OUTPUT")),
                             _events(store, ex["id"], ("INPUT", "DECLARED_INPUT")))
    return rnd, nodes, run_id


def leaf_numbers(leaf, target):
    """A LeafEvaluation's leaf.json as the numbers the search judges: its drop is the leaf's own
    `metric_drop` vs the reference (ptq) leaf, in the eval metric's units; its TFLM arena is the one
    the LeafEvaluator measured (None: TFLM could not run it, it meets no max_arena_bytes). A trial
    whose path failed (common.PathStage), or that has no drop (its reference failed), scores inf
    everywhere: it meets nothing and is promoted last; its error is kept."""
    if leaf.get(FAILED) or leaf.get("metric_drop") is None:
        inf = float("inf")
        return {"drop": inf, "int8_metric": None, **{k: inf for k in space.NPU_NUMBERS}, gates.ARENA_BYTES: inf,
                "error": leaf.get(ERROR) or "the reference (ptq) leaf failed"}
    npu = leaf["npu"][target]
    return {"drop": leaf["metric_drop"], "int8_metric": leaf["int8_metric"],
            **{k: npu[k] for k in space.NPU_NUMBERS}, gates.ARENA_BYTES: leaf.get(gates.ARENA_BYTES)}


def _leaves(rnd, nodes, batch, epochs, target):
    """{candidate id: its leaf numbers, state, tflite and model URIs} of a round's trials."""
    out = {}
    for c in batch:
        ids = rnd.leaves[c.id]
        state, outputs, inputs = nodes[ids.evaluate]
        out[c.id] = {**leaf_numbers(read_leaf(outputs[keys.EVALUATION_KEY]), target), "state": state,
                     "tflite_uri": nodes[ids.convert][1][keys.TFLITE_MODEL_KEY], "epochs": epochs,
                     "model_uri": inputs[keys.MODEL_KEY], **({KEEP_RATIO: c.keep} if c.keep is not None else {})}
    return out


def run(config, root, runner="local", log=print):
    """The whole search; returns its search.record.Record (also written to search.json and search.html
    next to the pipeline root)."""
    cfg = tree_config.merge(config)
    s = cfg["search"]
    ep, budget = s["epochs"], s["budget"]
    root, mlmd = runners.paths(root)
    work_dir = os.path.dirname(root)
    started = time.monotonic()
    max_time = budget["max_wall_time_s"]

    def out_of_time():
        return max_time is not None and time.monotonic() - started > max_time

    reference = space.Candidate(tree_paths.REFERENCE)
    rnd, nodes, _ = _run_round(cfg, [], 0, root, mlmd, runner)  # inputs and the reference leaf
    known = _leaves(rnd, nodes, [reference], 0, s["npu_target"])
    inputs = nodes[rnd.leaves[reference.id].evaluate][2]
    est = search_estimates.load_or_measure(cfg, inputs[keys.MODEL_KEY], inputs[keys.EXAMPLES_KEY], work_dir,
                                           say=log, out_of_time=out_of_time)
    if est["keeps"]:  # fitted to the latency limit
        cfg = space.with_keeps(cfg, est["keeps"])
    cands = [c for c in space.of_config(cfg, est["schedules"]) if c.id in est["estimates"]]
    executed, last = [], dict(known)

    def run_round(batch, epochs, resume=True):
        log(f"collabopt search: round at {epochs} epoch(s): {', '.join(c.id for c in batch)}")
        resume = {c.id: (last[c.id]["model_uri"], last[c.id]["epochs"]) for c in batch  # on from the last rung's model
                  if resume and c.id in last and c.continues() and last[c.id]["epochs"] < epochs}
        rnd, nodes, run_id = _run_round(cfg, batch, epochs, root, mlmd, runner, resume)
        executed.append({"run": run_id, "fine_tune_nodes": {n: nodes[n][0] for n in rnd.epochs if n in nodes},
                         "epochs": rnd.epochs})
        out = _leaves(rnd, nodes, batch, epochs, s["npu_target"])
        last.update(out)
        return out

    record = STRATEGIES[s["strategy"]](
        cands, est["estimates"], s["requirements"], run_round, min_epochs=ep["min"], max_epochs=ep["max"],
        eta=ep["eta"], budget_epochs=budget["max_epochs"], out_of_time=out_of_time, known=known)
    if not est["complete"] and record.stopped != "met":
        record.stopped = "wall time"  # during the estimates: candidates were left unmeasured
    record.strategy = s["strategy"]
    record.eval_metric, record.requirements, record.npu_target = cfg["training"]["eval_metric"], s["requirements"], \
        s["npu_target"]
    record.executions, record.schedules, record.sensitivity = executed, est["schedules"], est["sensitivity"]
    record.base, record.estimates, record.failed = est["base"], est["estimates"], est["failed"]
    record.thin_keep_ratios = space.keep_ratios(cfg)
    record.reference = known[reference.id]
    record.wall_time_s = time.monotonic() - started
    record.epochs_executed = sum(e["epochs"][n] for e in executed for n, st in e["fine_tune_nodes"].items()
                                 if st == "COMPLETE")
    record.dump(os.path.join(work_dir, RECORD_FILE))
    from collabopt.search import report  # matplotlib only here
    with open(os.path.join(work_dir, REPORT_FILE), "w") as f:
        f.write(report.render(record, f"collabopt search: {cfg['name']}"))
    return record
