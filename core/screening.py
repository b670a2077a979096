"""The "prefix" and "auto" search strategies: screen the shared first stages, then train the best
groups fully (or, auto, halve over every candidate when short fine-tuning already recovers).

Candidates that share their first stage (the same pruning, or the same clustering) form a group: the
first stage is one node that all of them fine-tune from. One cheap round fine-tunes each first stage
for `min_epochs` and scores it by its own one-stage leaf (prune -> PTQ, cluster -> PTQ, QAT). The
groups are ranked by that leaf; then each round trains the next groups' every candidate from the
baseline for `max_epochs`, as many groups as the epoch budget allows (at most 1/eta of them), until
a leaf meets every requirement and no untried group is estimated cheaper (core.search.stop_leaf).

Why: halving gives every stage node short fine-tuning, which pays when a short fine-tune already
recovers the metric (DS-CNN) and not when the leaves need the full epochs (MobileNet v1: pl1 after 3
epochs of clustering +1.5 pp, after 8 -0.2). Auto tells the two apart by the screening round
(benchmarks/README.md, issue 13).
"""
import math

from collabopt.core import search, tree_paths

PATH_OF_STAGE = {steps[0]: path for path, steps in tree_paths.PATHS.items() if len(steps) == 1}


def screen(candidate):
    """The one-stage candidate that fine-tunes only `candidate`'s first stage, with its parameters."""
    step = candidate.stages()[0]
    prune, cluster = step == "prune", step == "cluster"
    per_layer = candidate.layer_sparsity if prune else candidate.layer_clusters if cluster else ()
    return search.Candidate(PATH_OF_STAGE[step], candidate.sparsity if prune else None,
                            candidate.clusters if cluster else None, candidate.schedule if per_layer else None,
                            candidate.layer_sparsity if prune else (), candidate.layer_clusters if cluster else ())


def groups(candidates):
    """{first stage key: its candidates} in the candidates' order (the reference, with no stage, in none)."""
    out = {}
    for c in candidates:
        if c.stages():
            out.setdefault(c.stage_keys()[0], []).append(c)
    return out


def area(leaf, resources, requirements):
    """The part of the requirement box (max drop x each resource limit) a leaf at these numbers would
    dominate: the hypervolume it would add to an empty front; 0 when it is outside the box."""
    out = 1.0
    for req, key in search.REQUIREMENTS.items():
        limit = requirements.get(req)
        if limit is not None:
            out *= max(0.0, limit - (leaf["drop"] if key == "drop" else resources[key]))
    return out


def rank(group_map, screened, estimates, requirements):
    """Group keys, most promising first: the most box area a leaf with the screened drop and the
    group's smallest estimated resources would dominate (the search's goal: the front inside the
    requirements), then the least screened drop, then the smallest estimate."""
    def key(g):
        cheapest = {k: min(estimates[c.id][k] for c in group_map[g]) for k in search.NPU_NUMBERS}
        leaf = screened[g]
        return (-area(leaf, cheapest, requirements), leaf["drop"], *(cheapest[k] for k in search.RESOURCE_KEYS), g)
    return sorted(group_map, key=key)


def run(candidates, estimates, requirements, run_round, *, min_epochs=1, max_epochs=4, eta=2, budget_epochs=None,
        out_of_time=lambda: False, auto=False):
    """Screen, then train the ranked groups fully (module docstring); `run_round(candidates, epochs,
    resume=False)` fine-tunes every stage from the baseline. With `auto`, when a screened leaf
    already meets max_metric_drop after `min_epochs` (short fine-tuning recovers the metric), go on
    with successive halving over every candidate instead (core.search.run, the screened nodes not
    counted again): many short trials pay there, a few long ones otherwise. Returns the same
    record as core.search.run, its first round marked "screen" and `then`: "groups" or "halving"."""
    alive = search.order(candidates, estimates, requirements) or search.closest(
        candidates, estimates, requirements, math.ceil(len(candidates) / eta))
    record = {"considered": len(candidates), "strategy": "auto" if auto else "prefix", "rounds": [],
              "epochs_spent": 0, "chosen": None, "stopped": "exhausted",
              "feasible_by_estimate": len(search.order(candidates, estimates, requirements))}
    group_map, seen, trained = groups(alive), {}, set()
    screens = {g: screen(cs[0]) for g, cs in group_map.items()}
    reference = [c for c in alive if not c.stages()]

    def go(batch, epochs, **mark):
        spent = search.round_epochs(batch, epochs, done=trained)  # a node trained before is cached
        leaves = run_round(batch, epochs, resume=False)
        search.keep(seen, leaves, requirements)
        trained.update(search.stage_nodes(batch, epochs))
        record["epochs_spent"] += spent
        record["rounds"].append({"epochs": epochs, "ids": [c.id for c in batch], "cost_epochs": spent,
                                 "leaves": {c.id: leaves[c.id] for c in batch}, **mark})
        return leaves

    batch = reference + list(screens.values())
    if out_of_time() or (budget_epochs is not None and search.round_epochs(batch, min_epochs) > budget_epochs):
        record["stopped"] = "wall time" if out_of_time() else "budget"
        return search.answer(record, seen, estimates, requirements)
    leaves = go(batch, min_epochs, screen=True)
    limit = requirements.get("max_metric_drop")
    best = min((leaves[s.id]["drop"] for s in screens.values()), default=math.inf)  # no group: nothing to halve
    if auto and screens and (limit is None or best <= limit):
        return _halving(record, seen, trained, candidates, estimates, requirements, run_round, min_epochs=min_epochs,
                        max_epochs=max_epochs, eta=eta, out_of_time=out_of_time,
                        budget_epochs=None if budget_epochs is None else budget_epochs - record["epochs_spent"])
    record["then"] = "groups"
    pending = rank(group_map, {g: leaves[s.id] for g, s in screens.items()}, estimates, requirements)
    per_round = max(1, math.ceil(len(pending) / eta))
    while True:
        chosen = search.stop_leaf(seen, [c for g in pending for c in group_map[g]], estimates, requirements)
        if chosen:
            record.update(chosen=chosen, stopped="met", leaf=seen[chosen])
            return record
        if not pending:
            break
        if out_of_time():
            record["stopped"] = "wall time"
            break
        batch, taken = [], 0
        for g in pending[:per_round]:  # best first, while the budget allows
            more = batch + [screens[g]] + [c for c in group_map[g] if c != screens[g]]
            spent = record["epochs_spent"] + search.round_epochs(more, max_epochs, done=trained)
            if budget_epochs is not None and spent > budget_epochs:
                break
            batch, taken = more, taken + 1
        if not batch:
            record["stopped"] = "budget"
            break
        pending = pending[taken:]
        go(batch, max_epochs)
    return search.answer(record, seen, estimates, requirements)


def _halving(record, seen, trained, candidates, estimates, requirements, run_round, **kw):
    """The rest of an auto search as core.search.run, merged into the screening's record."""
    rest = search.run(candidates, estimates, requirements, run_round, done=trained, **kw)
    for rnd in rest["rounds"]:
        search.keep(seen, rnd["leaves"], requirements)
    record.update(then="halving", stopped=rest["stopped"], rounds=record["rounds"] + rest["rounds"],
                  epochs_spent=record["epochs_spent"] + rest["epochs_spent"])
    if rest["chosen"]:
        record.update(chosen=rest["chosen"], leaf=rest["leaf"])
        return record
    return search.answer(record, seen, estimates, requirements)
