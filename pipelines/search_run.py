"""`collabopt search` locally: the reference leaf, the sensitivity pass and one-shot estimates, then
rounds of trial pipelines (pipelines/search.py) driven by the search.strategy: core/search.py's
successive halving or core/screening.py's prefix screening (and auto, which picks after it).

Every round is a TFX run on the same MLMD with the cache on: a search started again reruns the
reference and the rounds it had reached, and every trial that finished comes back CACHED. The
sensitivity table and estimates (no fine-tuning, no TFX) are kept in search_estimates.json next to
the pipeline root, keyed by the baseline model and the search section, so they are not redone.
"""
import functools
import hashlib
import json
import os
import time

from collabopt import results, runners
from collabopt.components import keys
from collabopt.core import screening, search
from collabopt.core.artifact_files import ERROR, FAILED, read_leaf, write_json
from collabopt.pipelines import config as tree_config
from collabopt.pipelines import search as search_pipeline

ESTIMATES_FILE = "search_estimates.json"
RECORD_FILE = "search.json"
REPORT_FILE = "search.html"
DEFAULT_DROP_BUDGET = 0.01  # schedules' unit budget without search.requirements.max_metric_drop (1 pp)
FINE_TUNE_NODES = tuple(f"{n}_" for n in search_pipeline.STAGE_NODE.values())


def _events(store, execution_id, kinds):
    from ml_metadata.proto import metadata_store_pb2 as pb
    want = {getattr(pb.Event, k) for k in kinds}
    ev = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in want]
    arts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in ev])}
    return {e.path.steps[0].key: arts[e.artifact_id].uri for e in ev if e.path.steps}


def _run_round(cfg, candidates, epochs, root, mlmd, runner, resume=None):
    """Run one round; returns ({node id: (state, {output key: uri}, {input key: uri})}, run id)."""
    pipe = search_pipeline.create_round(cfg, candidates, epochs, root, mlmd, resume=resume)
    run_id = runners.run(pipe, runner)
    store = results.connect(mlmd)
    nodes = {}
    for ex in results.executions(store, results.run_by_id(store, run_id)):
        nodes[ex["node"]] = (ex["state"], _events(store, ex["id"], ("OUTPUT", "DECLARED_OUTPUT")),
                             _events(store, ex["id"], ("INPUT", "DECLARED_INPUT")))
    return nodes, run_id


def leaf_numbers(leaf, target):
    """A LeafEvaluation's leaf.json as the numbers core.search judges: its drop is the leaf's own
    `metric_drop` vs the reference (ptq) leaf, in the eval metric's units. A trial whose path failed
    (common.PathStage), or that has no drop (its reference failed), scores inf everywhere: it meets
    nothing and is promoted last; its error is kept."""
    if leaf.get(FAILED) or leaf.get("metric_drop") is None:
        inf = float("inf")
        return {"drop": inf, "int8_metric": None, **{k: inf for k in search.NPU_NUMBERS},
                "error": leaf.get(ERROR) or "the reference (ptq) leaf failed"}
    npu = leaf["npu"][target]
    return {"drop": leaf["metric_drop"], "int8_metric": leaf["int8_metric"],
            **{k: npu[k] for k in search.NPU_NUMBERS}}


def _estimates(cfg, model_uri, examples_uri, work_dir, log):
    """The sensitivity table, the per-layer schedules and each candidate's one-shot estimate, from
    search_estimates.json when the baseline and the search section are the same."""
    s = cfg["search"]
    used = {k: s[k] for k in ("sparsities", "clusters", "per_layer", "schedule_budgets", "sensitivity_sample",
                              "npu_target")}  # not the budget, nor the resource limits
    used["paths"] = [c.id for c in search_pipeline.space(cfg)]
    used["max_metric_drop"] = s["requirements"].get("max_metric_drop")
    key = hashlib.sha256(json.dumps([model_uri, used, cfg["data"], cfg["training"]],
                                    sort_keys=True).encode()).hexdigest()
    path = os.path.join(work_dir, ESTIMATES_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("key") == key:
            log(f"collabopt search: estimates from {path}")
            return saved
    from collabopt.core import keras_io, schedule, sensitivity, stages, train

    t = cfg["training"]
    spec = stages.DataSpec(examples_uri, **cfg["data"], target=t["target"], module_file=t["module_file"])
    sample = sensitivity.Sample(spec, train.TrainingSpec(eval_metric=t["eval_metric"], top_k=t["top_k"]),
                                cfg["convert"]["representative_samples"], s["sensitivity_sample"])
    model = keras_io.load_model(model_uri)
    target = s["npu_target"]
    if s["per_layer"]:
        log(f"collabopt search: sensitivity pass on {spec.eval_cap(sample.eval_limit) or 'all'} eval examples, "
            f"{target}")
        rows, base = sensitivity.table(model, sample, os.path.join(work_dir, "sensitivity"),
                                       sparsities=s["sparsities"], clusters=s["clusters"], target=target)
    else:  # no per-layer schedules: no table to build them from
        rows, base = [], sensitivity.measure(model, sample, os.path.join(work_dir, "sensitivity", "base"), target)
    totals = {k: base[k] for k in ("encoded_weights_bytes", "npu_cycles")}
    budget = s["requirements"].get("max_metric_drop") or DEFAULT_DROP_BUDGET
    schedules = []
    for i, f in enumerate(s["schedule_budgets"] if s["per_layer"] else []):
        maps = {t: schedule.build(rows, t, budget * f, totals)[0] for t in ("prune", "cluster")}
        if (maps["prune"] or maps["cluster"]) and all(maps != {t: o[t] for t in maps} for o in schedules):
            schedules.append({"name": f"pl{i + 1}", "budget": budget * f, **maps})
    cands = search_pipeline.space(cfg, schedules)
    layers = {t: sensitivity.layers(model, t) for t in ("prune", "cluster")}
    estimates = {}
    for c in cands:
        ls = dict(c.layer_sparsity) or ({n: c.sparsity for n in layers["prune"]} if c.sparsity else None)
        lc = dict(c.layer_clusters) or ({n: c.clusters for n in layers["cluster"]} if c.clusters else None)
        m = base if not (ls or lc) else sensitivity.measure(
            sensitivity.one_shot(model, ls, lc), sample, os.path.join(work_dir, "estimates", c.id), target)
        estimates[c.id] = {**m, "drop": search.metric_drop(m, base, t["eval_metric"])}
    saved = {"key": key, "base": base, "sensitivity": rows, "schedules": schedules, "estimates": estimates}
    write_json(path, saved)
    return saved


def run(config, root, runner="local", log=print):
    """The whole search; returns its record (also written to search.json next to the pipeline root)."""
    cfg = tree_config.merge(config)
    s = cfg["search"]
    ep = {**tree_config.DEFAULTS["search"]["epochs"], **s["epochs"]}
    budget = {**tree_config.DEFAULTS["search"]["budget"], **s["budget"]}
    root, mlmd = runners.paths(root)
    work_dir = os.path.dirname(root)
    started = time.monotonic()
    nodes, _ = _run_round(cfg, [], 0, root, mlmd, runner)  # inputs and the reference leaf
    _, _, ev_id = search_pipeline.trial_ids(search.Candidate("ptq"), 0)
    inputs = nodes[ev_id][2]
    est = _estimates(cfg, inputs[keys.MODEL_KEY], inputs[keys.EXAMPLES_KEY], work_dir, log)
    sched = {sch["name"]: sch for sch in est["schedules"]}
    cands = search_pipeline.space(cfg, list(sched.values()))
    executed, last = [], {}

    def run_round(batch, epochs, resume=True):
        log(f"collabopt search: round at {epochs} epoch(s): {', '.join(c.id for c in batch)}")
        resume = {c.id: (last[c.id]["model_uri"], last[c.id]["epochs"]) for c in batch  # on from the last rung's model
                  if resume and c.id in last and c.continues() and last[c.id]["epochs"] < epochs}
        nodes, run_id = _run_round(cfg, batch, epochs, root, mlmd, runner, resume)
        executed.append({"run": run_id, "fine_tune_nodes": {
            n: st for n, (st, _, _) in nodes.items() if n.startswith(FINE_TUNE_NODES)}})
        out = {}
        for c in batch:
            conv_id, _, eval_id = search_pipeline.trial_ids(c, epochs)
            state, outputs, inputs = nodes[eval_id]
            out[c.id] = {**leaf_numbers(read_leaf(outputs[keys.EVALUATION_KEY]), s["npu_target"]), "state": state,
                         "tflite_uri": nodes[conv_id][1][keys.TFLITE_MODEL_KEY], "epochs": epochs,
                         "model_uri": inputs[keys.MODEL_KEY]}
        last.update(out)
        return out

    max_time = budget["max_wall_time_s"]
    strategy = (search.run if s["strategy"] == "halving"
                else functools.partial(screening.run, auto=s["strategy"] == "auto"))
    record = strategy(cands, est["estimates"], s["requirements"], run_round, min_epochs=ep["min"],
                      max_epochs=ep["max"], eta=ep["eta"], budget_epochs=budget["max_epochs"],
                      out_of_time=lambda: bool(max_time) and time.monotonic() - started > max_time)
    record.update(strategy=s["strategy"], eval_metric=cfg["training"]["eval_metric"], executions=executed,
                  schedules=est["schedules"], sensitivity=est["sensitivity"],
                  base=est["base"], estimates=est["estimates"], requirements=s["requirements"],
                  npu_target=s["npu_target"], wall_time_s=time.monotonic() - started,
                  epochs_executed=sum(search_pipeline.node_epochs(n) for e in executed
                                      for n, st in e["fine_tune_nodes"].items() if st == "COMPLETE"))
    write_json(os.path.join(work_dir, RECORD_FILE), record)
    from collabopt.core import search_report  # matplotlib only here
    with open(os.path.join(work_dir, REPORT_FILE), "w") as f:
        f.write(search_report.render(record, f"collabopt search: {cfg['name']}"))
    return record
