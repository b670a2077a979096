"""The search's cheap numbers, before any fine-tuning: the per-layer sensitivity table, the per-layer
schedules built from it, and each candidate's one-shot estimate (search/sensitivity.py measures them;
no TFX).

They are kept in search_estimates.json next to the pipeline root, keyed by the baseline model and the
parts of the config they depend on, and saved after every measurement (atomically), so a search
killed during its estimates and started again measures only what it had not. The wall-time budget is
checked before every measurement: a search out of time goes on with what it has measured. With a
latency limit and no search.thin_keep_ratios, the thin keep ratios are fitted to the limit first
(search.space.fit_keeps; each probe a thinned one-shot model, saved like the rest). A
candidate whose one-shot model cannot be converted or evaluated is a named failure, not a failed
search.
"""
import hashlib
import json
import logging
import os

from collabopt.core.artifact_files import write_json
from collabopt.search import per_layer, space

ESTIMATES_FILE = "search_estimates.json"
THIN_KEYS = ("score", "min_keep", "exclude_layers")  # the thin section's keys a thinned estimate uses
DEFAULT_DROP_BUDGET = 0.01  # schedules' unit budget without search.requirements.max_metric_drop (1 pp)
log = logging.getLogger("collabopt")


def key(cfg, model_uri):
    """What the estimates depend on: the baseline, the space's parameters, the data, the metric (not the
    budget, nor the resource limits)."""
    s = cfg["search"]
    used = {k: s[k] for k in ("sparsities", "clusters", "thin_keep_ratios", "per_layer", "schedule_budgets",
                              "sensitivity_sample", "npu_target")}
    used["thin"] = {k: cfg["thin"][k] for k in THIN_KEYS}
    used["paths"] = [c.id for c in space.of_config(cfg)]
    used["max_metric_drop"] = s["requirements"].get("max_metric_drop")
    if space.fits_latency(cfg):  # the keep ratios follow the latency limits
        used["latency"] = {r: s["requirements"].get(r) for r in space.LATENCY}
    return hashlib.sha256(json.dumps([model_uri, used, cfg["data"], cfg["training"]],
                                     sort_keys=True).encode()).hexdigest()


def read(path, want_key, say):
    """The saved estimates for `want_key`, else a fresh record; an unreadable file is absent (one line)."""
    fresh = {"key": want_key, "base": None, "sensitivity": [], "sensitivity_done": False, "estimates": {},
             "failed": {}, "fit": {}, "keeps": None}
    if not os.path.isfile(path):
        return fresh
    try:
        with open(path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:  # truncated by a kill before writes were atomic, or edited
        say(f"collabopt search: {path} is unreadable ({type(e).__name__}: {e}); measuring again")
        return fresh
    if saved.get("key") != want_key:
        return fresh
    say(f"collabopt search: estimates from {path}")
    return {**fresh, **saved}


def _reason(e):
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def load_or_measure(cfg, model_uri, examples_uri, work_dir, *, say=print, out_of_time=lambda: False):
    """{"base", "sensitivity" (rows), "schedules", "estimates" ({candidate id: numbers}), "failed"
    ({candidate id: why}), "complete"}: from search_estimates.json where it holds them, measured
    (and saved after each measurement) where not, until `out_of_time()`."""
    from collabopt.core import stages
    from collabopt.core.model import keras_io, train
    from collabopt.search import sensitivity

    path = os.path.join(work_dir, ESTIMATES_FILE)
    state = read(path, key(cfg, model_uri), say)
    s, t = cfg["search"], cfg["training"]
    from collabopt.core.data import scale
    spec = stages.DataSpec(examples_uri, **{**cfg["data"], "scale": scale.resolve(cfg["data"]["scale"], model_uri)},
                           target=t["target"], module_file=t["module_file"])
    sample = sensitivity.Sample(spec, train.TrainingSpec(eval_metric=t["eval_metric"], top_k=t["top_k"]),
                                cfg["convert"]["representative_samples"], s["sensitivity_sample"])
    target, model = s["npu_target"], None

    def measure(m, where):
        return sensitivity.measure(m, sample, os.path.join(work_dir, where), target)

    def loaded():
        nonlocal model
        model = model or keras_io.load_model(model_uri)
        return model

    complete = True
    if state["base"] is None and not out_of_time():
        state["base"] = measure(loaded(), os.path.join("sensitivity", "base"))
        write_json(path, state)
    if state["base"] is None:
        return {**state, "schedules": [], "complete": False}
    base = state["base"]
    if s["per_layer"] and not state["sensitivity_done"]:
        say(f"collabopt search: sensitivity pass on {spec.eval_cap(sample.eval_limit) or 'all'} eval examples, "
            f"{target}")
        done = {(r["technique"], r["layer"], r["value"]) for r in state["sensitivity"]}
        for technique, name, value in sensitivity.changes(loaded(), s["sparsities"], s["clusters"]):
            if (technique, name, value) in done:
                continue
            if out_of_time():
                complete = False
                break
            try:
                row = sensitivity.row(loaded(), sample, technique, name, value, base,
                                      os.path.join(work_dir, "sensitivity"), target)
            except Exception as e:  # noqa: BLE001 - one change that cannot be measured is left out, named
                say(f"collabopt search: sensitivity of {technique} {name} at {value} not measured: {_reason(e)}")
                row = {"layer": name, "technique": technique, "value": value, "error": _reason(e)}
            state["sensitivity"].append(row)
            write_json(path, state)
        else:
            state["sensitivity_done"] = True
            write_json(path, state)
    schedules = build_schedules(cfg, state) if state["sensitivity_done"] else []
    models, layers = {}, {}  # per thin keep ratio (None: unthinned): the one-shot model and its layers

    def start(keep):
        """The model a candidate's one-shot changes start from: the baseline, or it thinned to `keep` by
        channel pruning's own choice and surgery (no fine-tuning), once per keep ratio."""
        if keep not in models:
            try:
                models[keep] = loaded() if keep is None else sensitivity.thinned(
                    loaded(), keep, sample, target, os.path.join(work_dir, "estimates", f"thin_{keep}"),
                    **{k: cfg["thin"][k] for k in THIN_KEYS})
                layers[keep] = {t_: sensitivity.layers(models[keep], t_) for t_ in ("prune", "cluster")}
            except Exception as e:  # noqa: BLE001 - every candidate of this keep ratio fails with it, once
                models[keep] = e
        if isinstance(models[keep], Exception):
            raise models[keep]
        return models[keep], layers[keep]

    if space.fits_latency(cfg) and state["keeps"] is None:
        state["keeps"] = fit_keeps(cfg, state, lambda keep: measure(start(keep)[0], os.path.join("fit", f"t{keep}")),
                                   out_of_time, save=lambda: write_json(path, state))
        if state["keeps"] is None:
            return {**state, "schedules": schedules, "complete": False}
        write_json(path, state)
        say(f"collabopt search: thin keep ratios {', '.join(map(str, state['keeps']))}, fitted to "
            + ", ".join(f"{r} {s['requirements'][r]:g}" for r in space.LATENCY if s["requirements"].get(r) is not None)
            + f" by one-shot {target} numbers")
    if state["keeps"]:
        cfg = space.with_keeps(cfg, state["keeps"])
    for c in space.of_config(cfg, schedules):
        if c.id in state["estimates"] or c.id in state["failed"]:
            continue
        if out_of_time():
            complete = False
            break
        if not c.stages():
            state["estimates"][c.id] = {**base, "drop": 0.0}
            continue
        try:
            model, names = start(c.keep)
            ls = dict(c.layer_sparsity) or ({n: c.sparsity for n in names["prune"]} if c.sparsity else None)
            lc = dict(c.layer_clusters) or ({n: c.clusters for n in names["cluster"]} if c.clusters else None)
            fitted = state["fit"].get(str(c.keep), {}) if c.keep is not None and not (ls or lc) else {}
            if not (ls or lc or c.keep):
                m = base
            elif fitted and "error" not in fitted:  # this very model, measured while fitting the keep ratios
                m = fitted
            else:
                m = measure(sensitivity.one_shot(model, ls, lc), os.path.join("estimates", c.id))
            state["estimates"][c.id] = {**m, "drop": space.metric_drop(m, base, t["eval_metric"])}
        except Exception as e:  # noqa: BLE001 - a candidate that cannot be measured is a named failure
            state["failed"][c.id] = f"its one-shot model could not be converted or evaluated: {_reason(e)}"
            say(f"collabopt search: candidate {c.id} left out: {state['failed'][c.id]}")
        write_json(path, state)
    return {**state, "schedules": schedules, "complete": complete}


class _OutOfTime(Exception):
    pass


def fit_keeps(cfg, state, measure_keep, out_of_time, save):
    """space.fit_keeps with each probe's one-shot numbers measured once (`measure_keep(keep)`), kept in
    state["fit"] and saved (`save()`); None when out of time first. A keep ratio whose thinned model
    cannot be measured does not meet the limit."""
    limits = {r: v for r, v in cfg["search"]["requirements"].items() if r in space.LATENCY}

    def meets(keep):
        k = str(keep)
        if k not in state["fit"]:
            if out_of_time():
                raise _OutOfTime
            try:
                state["fit"][k] = measure_keep(keep)
            except Exception as e:  # noqa: BLE001 - this keep ratio misses; a smaller one may measure
                state["fit"][k] = {"error": _reason(e)}
            save()
        m = state["fit"][k]
        return "error" not in m and not space.misses(m, limits)
    try:
        return space.fit_keeps(meets)
    except _OutOfTime:
        return None


def build_schedules(cfg, state):
    """The per-layer schedules from the sensitivity table: one per drop budget (search.schedule_budgets x
    max_metric_drop), each spent where the NPU saves most (search.per_layer); equal ones once."""
    s, base = cfg["search"], state["base"]
    rows = [r for r in state["sensitivity"] if "error" not in r]
    totals = {k: base[k] for k in ("encoded_weights_bytes", "npu_cycles")}
    budget = s["requirements"].get("max_metric_drop") or DEFAULT_DROP_BUDGET
    schedules = []
    for i, f in enumerate(s["schedule_budgets"] if s["per_layer"] else []):
        maps = {t: per_layer.build(rows, t, budget * f, totals)[0] for t in ("prune", "cluster")}
        if (maps["prune"] or maps["cluster"]) and all(maps != {t: o[t] for t in maps} for o in schedules):
            schedules.append({"name": f"pl{i + 1}", "budget": budget * f, **maps})
    return schedules
