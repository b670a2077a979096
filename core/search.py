"""Requirement-driven search over the deployment tree: the space, cheap-before-expensive ordering,
successive halving on fine-tuning epochs, the stop rule and the answer when nothing is feasible.

Pure: a leaf here is a flat dict of numbers (LEAF_KEYS); who computes them (one-shot Vela estimates,
fine-tuned TFX trials) is the caller's business (`run_round`).
"""
import dataclasses
import math

from collabopt.core import metrics, pareto, tree_paths

# requirement -> the leaf number it bounds (every one an upper bound); `drop`: the INT8 eval metric's
# drop vs the ptq leaf in the metric's units, as requirements.max_metric_drop
REQUIREMENTS = {
    "max_metric_drop": "drop",
    "max_encoded_weights_bytes": "encoded_weights_bytes",
    "max_flash_bytes": "flash_bytes",
    "max_npu_cycles": "npu_cycles",
    "max_npu_inference_time_s": "inference_time_s",
    "max_sram_bytes": "sram_bytes",
}
NPU_NUMBERS = ("encoded_weights_bytes", "npu_cycles", "inference_time_s", "sram_bytes", "flash_bytes")  # a leaf's
RESOURCE_KEYS = ("encoded_weights_bytes", "npu_cycles")  # what a cheaper candidate is cheaper in
OBJECTIVES = ("drop", "encoded_weights_bytes", "npu_cycles")  # all minimized
FINE_TUNED = ("prune", "cluster", "qat")


def metric_drop(leaf, reference, eval_metric):
    """How much the leaf's INT8 metric (`int8_metric`) is worse than the reference leaf's, in the
    metric's units (> 0: worse, whichever way the metric is better: core.metrics.drop): the one
    place the search reads the metric."""
    return metrics.drop(eval_metric, reference["int8_metric"], leaf["int8_metric"])


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One leaf of the space: a path and its parameters (uniform, or a named per-layer schedule)."""
    path: str
    sparsity: float = None
    clusters: int = None
    schedule: str = None  # name of the per-layer schedule; its maps below
    layer_sparsity: tuple = ()  # ((layer, sparsity), ...)
    layer_clusters: tuple = ()  # ((layer, clusters), ...)

    @property
    def id(self):
        parts = [self.path]
        if self.schedule:
            parts.append(self.schedule)
        if self.sparsity is not None:
            parts.append(f"s{round(self.sparsity * 100)}")
        if self.clusters is not None:
            parts.append(f"k{self.clusters}")
        return "_".join(parts)

    def stages(self):
        return tree_paths.PATHS[self.path]

    def continues(self):
        """A later rung can go on fine-tuning this candidate's last stage from the model the previous
        rung left (prune / cluster; a QAT model is not wrapped for QAT again)."""
        return bool(self.stages()) and self.stages()[-1] in ("prune", "cluster")

    def stage_keys(self):
        """Per stage of the path, the key of the node that computes it: equal keys are one node
        (candidates that share a prefix with equal parameters share its fine-tuning)."""
        keys, prefix = [], []
        for step in self.stages():
            if step == "prune":
                prefix.append(f"s{round(self.sparsity * 100)}" if not self.layer_sparsity else self.schedule)
            elif step == "cluster":
                prefix.append(f"k{self.clusters}" if not self.layer_clusters else self.schedule)
            prefix.append(step)
            keys.append("_".join(prefix))
        return keys


def space(paths, sparsities=(), clusters=(), schedules=()):
    """Every candidate: paths x target sparsity x clusters (each where the path has that stage), plus
    per schedule ({"name", "prune": {layer: s}, "cluster": {layer: k}}) the paths it fits (every
    fine-tuned stage of the path has a map in it)."""
    out = []
    for path in tree_paths.expand(paths):
        steps = tree_paths.PATHS[path]
        for s in (sparsities if "prune" in steps else [None]):
            for k in (clusters if "cluster" in steps else [None]):
                out.append(Candidate(path, s, k))
        for sch in schedules:
            needs = [t for t in ("prune", "cluster") if t in steps]
            if needs and all(sch.get(t) for t in needs):
                out.append(Candidate(
                    path, schedule=sch["name"],
                    layer_sparsity=tuple(sorted(sch["prune"].items())) if "prune" in steps else (),
                    layer_clusters=tuple(sorted(sch["cluster"].items())) if "cluster" in steps else ()))
    return out


def misses(leaf, requirements):
    """{requirement: by how much the leaf is over it} for each requirement it misses."""
    out = {}
    for req, key in REQUIREMENTS.items():
        limit = requirements.get(req)
        if limit is not None and leaf[key] > limit + 1e-9:
            out[req] = leaf[key] - limit
    return out


def could_meet(estimate, requirements, slack=0.05):
    """The one-shot estimate's NPU numbers are within the resource requirements (+ slack: fine-tuning
    moves them a little); its drop is not judged (fine-tuning recovers it)."""
    return all(estimate[k] <= requirements[r] * (1 + slack) for r, k in REQUIREMENTS.items()
               if k != "drop" and requirements.get(r) is not None)


def order(candidates, estimates, requirements):
    """Cheap before expensive: the candidates whose estimates could meet the requirements, smallest
    estimated NPU cost first (encoded weights, then cycles, then estimated drop)."""
    ok = [c for c in candidates if could_meet(estimates[c.id], requirements)]
    return sorted(ok, key=lambda c: (*(estimates[c.id][k] for k in RESOURCE_KEYS), estimates[c.id]["drop"], c.id))


def closest(candidates, estimates, requirements, keep):
    """None could meet the resource requirements by estimate: the `keep` whose estimates miss them by
    the least (largest relative miss), so the search still returns leaves and their misses."""
    def worst(c):
        return max((estimates[c.id][k] / requirements[r] for r, k in REQUIREMENTS.items()
                    if k != "drop" and requirements.get(r)), default=0.0)
    return sorted(candidates, key=lambda c: (worst(c), c.id))[:keep]


def stage_nodes(candidates, epochs):
    """{(stage key, epochs)}: the distinct fine-tuning nodes that train these candidates from the baseline."""
    return {(k, epochs) for c in candidates for k, s in zip(c.stage_keys(), c.stages()) if s in FINE_TUNED}


def round_epochs(candidates, epochs, previous=0, done=()):
    """Fine-tuning epochs one round costs: each distinct fine-tuned stage node once, but not one in
    `done` (stage_nodes trained before: cached); with `previous` (the epochs of the rung before,
    resumed), a candidate that continues costs only the difference."""
    fresh = [c for c in candidates if not (previous and c.continues())]
    return (epochs - previous) * (len(candidates) - len(fresh)) + epochs * len(stage_nodes(fresh, epochs) - set(done))


def promote(candidates, leaves, keep):
    """The `keep` best of a rung, NSGA-II style over OBJECTIVES: Pareto rank first; within a rank the
    loneliest (crowding distance: the front's extremes first, so the smallest leaf is not cut for
    recovering late from heavy compression); ties go to the cheaper (encoded weights, cycles)."""
    pts = [tuple(leaves[c.id][k] for k in OBJECTIVES) for c in candidates]
    rank = pareto.ranks(pts, (pareto.MIN,) * len(OBJECTIVES))
    crowd = [0.0] * len(pts)
    for r in set(rank):
        idx = [i for i in range(len(pts)) if rank[i] == r]
        for i, d in zip(idx, pareto.crowding([pts[i] for i in idx], (pareto.MIN,) * len(OBJECTIVES))):
            crowd[i] = d
    best = sorted(range(len(candidates)), key=lambda i: (rank[i], -crowd[i], pts[i][1], pts[i][2], pts[i][0],
                                                         candidates[i].id))
    return [candidates[i] for i in best[:keep]]


def stop_leaf(leaves, pending, estimates, requirements):
    """The chosen leaf (candidate id) when the search may stop: a leaf that meets every requirement
    and no other pending candidate (one more epochs could still improve) is estimated no more
    expensive in every resource, so none could dominate it; the smallest, then fastest such leaf.
    None: keep going."""
    feasible = sorted((cid for cid, leaf in leaves.items() if not misses(leaf, requirements)),
                      key=lambda cid: (*(leaves[cid][k] for k in RESOURCE_KEYS), leaves[cid]["drop"]))
    for cid in feasible:
        leaf = leaves[cid]
        if not any(all(estimates[c.id][k] <= leaf[k] for k in RESOURCE_KEYS) for c in pending if c.id != cid):
            return cid
    return None


def best_so_far(leaves, requirements):
    """Nothing feasible: per objective the best leaf, and per requirement the smallest miss of any
    leaf (0 if some leaf meets it): {"best": {objective: (id, value)}, "misses": {req: amount}}."""
    best = {k: min(((cid, leaf[k]) for cid, leaf in leaves.items()), key=lambda t: (t[1], t[0]))
            for k in OBJECTIVES} if leaves else {}
    miss = {req: min(misses(leaf, requirements).get(req, 0.0) for leaf in leaves.values())
            for req in REQUIREMENTS if requirements.get(req) is not None} if leaves else {}
    return {"best": best, "misses": {r: m for r, m in miss.items() if m > 0}}


def rungs(min_epochs, max_epochs, eta):
    """Epochs per rung: min_epochs, x eta, ... up to max_epochs (always the last rung)."""
    out, e = [], min_epochs
    while e < max_epochs:
        out.append(e)
        e *= eta
    return out + [max_epochs]


def run(candidates, estimates, requirements, run_round, *, min_epochs=1, max_epochs=4, eta=2, budget_epochs=None,
        out_of_time=lambda: False, resume=True, done=()):
    """Successive halving: round r fine-tunes the alive candidates for rungs()[r] epochs
    (`run_round(candidates, epochs) -> {id: leaf}`; with `resume` a candidate that continues() is
    fine-tuned on from the previous rung's model, and costs only the extra epochs), keeps the best
    1/eta, and stops early by
    `stop_leaf`, when the epoch budget would be exceeded or when `out_of_time()` says so before a
    round; `done`: stage nodes trained before (round_epochs). Returns the search record: per round the
    epochs, ids, epochs spent and leaves; the chosen id, or the best so far and the misses."""
    alive = order(candidates, estimates, requirements) or closest(
        candidates, estimates, requirements, math.ceil(len(candidates) / eta))
    record = {"considered": len(candidates), "feasible_by_estimate": len(order(candidates, estimates, requirements)),
              "rounds": [],
              "epochs_spent": 0, "chosen": None, "stopped": "exhausted"}
    seen, previous = {}, 0  # per candidate its newest leaf, or the one that met: each is a real model
    for r, epochs in enumerate(rungs(min_epochs, max_epochs, eta)):
        if not alive:
            break
        if out_of_time():
            record["stopped"] = "wall time"
            break
        cost = round_epochs(alive, epochs, previous if resume else 0, done)
        if budget_epochs is not None and record["epochs_spent"] + cost > budget_epochs:
            record["stopped"] = "budget"
            break
        leaves, previous = run_round(alive, epochs), epochs
        keep(seen, leaves, requirements)
        record["epochs_spent"] += cost
        record["rounds"].append({"epochs": epochs, "ids": [c.id for c in alive], "cost_epochs": cost,
                                 "leaves": {c.id: leaves[c.id] for c in alive}})
        last = epochs >= max_epochs
        chosen = stop_leaf(seen, [] if last else alive, estimates, requirements)
        if chosen:
            record.update(chosen=chosen, stopped="met", leaf=seen[chosen])
            return record
        alive = [] if last else promote(alive, leaves, max(1, math.ceil(len(alive) / eta)))
    return answer(record, seen, estimates, requirements)


def keep(seen, leaves, requirements):
    """Record a round's leaves in `seen` (per candidate its newest leaf); a leaf that met every
    requirement stays the candidate's answer when a later one misses."""
    for cid, leaf in leaves.items():
        if not (cid in seen and not misses(seen[cid], requirements) and misses(leaf, requirements)):
            seen[cid] = leaf


def answer(record, seen, estimates, requirements):
    """The end of a search that did not stop on `stop_leaf` (budget, wall time, nothing left): a leaf
    that meets every requirement is still the answer (`stopped` says why a cheaper one may be
    untried); always the best so far per objective and the misses."""
    chosen = stop_leaf(seen, [], estimates, requirements)
    if chosen:
        record.update(chosen=chosen, leaf=seen[chosen])
    record["best_so_far"] = best_so_far(seen, requirements)
    return record
