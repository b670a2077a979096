"""The "halving" strategy (the default): successive halving on fine-tuning epochs. Every candidate the
estimates allow is fine-tuned for a few epochs; the best 1/eta go on with eta x the epochs, chosen
NSGA-II style over (drop, encoded weights, cycles), until a leaf meets every requirement and no
candidate still in the race could dominate it (search.stop)."""
import math

from collabopt.core.evaluation import pareto
from collabopt.search import record as search_record, space, stop
from collabopt.search.space import OBJECTIVES


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


def rungs(min_epochs, max_epochs, eta):
    """Epochs per rung: min_epochs, x eta, ... up to max_epochs (always the last rung)."""
    out, e = [], min_epochs
    while e < max_epochs:
        out.append(e)
        e *= eta
    return out + [max_epochs]


def run(candidates, estimates, requirements, run_round, *, min_epochs=1, max_epochs=4, eta=2, budget_epochs=None,
        out_of_time=lambda: False, resume=True, done=(), known=None):
    """Successive halving: round r fine-tunes the alive candidates for rungs()[r] epochs
    (`run_round(candidates, epochs) -> {id: leaf}`; with `resume` a candidate that continues() is
    fine-tuned on from the previous rung's model, and costs only the extra epochs), keeps the best
    1/eta, and stops early by
    `stop_leaf`, when the epoch budget would be exceeded or when `out_of_time()` says so before a
    round; `done`: stage nodes trained before (round_epochs); `known`: leaves already built (the
    reference's), which may be the answer too. Returns the search record: per round the
    epochs, ids, epochs spent and leaves; the chosen id, or the best so far and the misses."""
    alive = space.order(candidates, estimates, requirements) or space.closest(
        candidates, estimates, requirements, math.ceil(len(candidates) / eta))
    record = search_record.Record("halving", len(candidates), len(space.order(candidates, estimates, requirements)))
    seen, previous = dict(known or {}), 0  # per candidate its newest leaf, or the one that met: each is a real model
    for r, epochs in enumerate(rungs(min_epochs, max_epochs, eta)):
        if not alive:
            break
        if out_of_time():
            record.stopped = "wall time"
            break
        cost = space.round_epochs(alive, epochs, previous if resume else 0, done)
        if budget_epochs is not None and record.epochs_spent + cost > budget_epochs:
            record.stopped = "budget"
            break
        leaves, previous = run_round(alive, epochs), epochs
        stop.keep(seen, leaves, requirements)
        record.add_round(epochs, alive, cost, leaves)
        last = epochs >= max_epochs
        chosen = stop.stop_leaf(seen, [] if last else alive, estimates, requirements)
        if chosen:
            record.chosen, record.stopped, record.leaf = chosen, "met", seen[chosen]
            return record
        alive = [] if last else promote(alive, leaves, max(1, math.ceil(len(alive) / eta)))
    return stop.answer(record, seen, estimates, requirements)
