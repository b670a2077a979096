"""The "prefix" strategy: screen the shared first stages, then train the best groups fully.

Candidates that share their first stage (the same pruning, or the same clustering) form a group: the
first stage is one node that all of them fine-tune from. One cheap round fine-tunes each first stage
for `min_epochs` and scores it by its own one-stage leaf (prune -> PTQ, cluster -> PTQ, QAT). The
groups are ranked by that leaf; then each round trains the next groups' every candidate from the
baseline for `max_epochs`, as many groups as the epoch budget allows (at most 1/eta of them), until
a leaf meets every requirement and no untried group is estimated cheaper (search.stop).

Why: halving (search.halving) gives every stage node short fine-tuning, which pays when a short fine-tune already
recovers the metric (DS-CNN) and not when the leaves need the full epochs (MobileNet v1: pl1 after 3
epochs of clustering +1.5 pp, after 8 -0.2). search.auto tells the two apart by the
screening round (benchmarks/README.md).
"""
import math

from collabopt.core import tree_paths
from collabopt.search import record as search_record, space, stop

PATH_OF_STAGE = {steps[0]: path for path, steps in tree_paths.PATHS.items() if len(steps) == 1}


def screen(candidate):
    """The one-stage candidate that fine-tunes only `candidate`'s first stage, with its parameters."""
    step = candidate.stages()[0]
    prune, cluster = step == "prune", step == "cluster"
    per_layer = candidate.layer_sparsity if prune else candidate.layer_clusters if cluster else ()
    return space.Candidate(PATH_OF_STAGE[step], candidate.sparsity if prune else None,
                            candidate.clusters if cluster else None, candidate.schedule if per_layer else None,
                            candidate.layer_sparsity if prune else (), candidate.layer_clusters if cluster else (),
                            candidate.keep if step == tree_paths.THIN else None)


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
    for req, key in space.REQUIREMENTS.items():
        limit = requirements.get(req)
        if limit is not None:
            out *= max(0.0, limit - (leaf["drop"] if key == "drop" else resources[key]))
    return out


def rank(group_map, screened, estimates, requirements):
    """Group keys, most promising first: the most box area a leaf with the screened drop and the
    group's smallest estimated resources would dominate (the search's goal: the front inside the
    requirements), then the least screened drop, then the smallest estimate."""
    def key(g):
        cheapest = {k: min(estimates[c.id][k] for c in group_map[g]) for k in space.NPU_NUMBERS}
        leaf = screened[g]
        return (-area(leaf, cheapest, requirements), leaf["drop"], *(cheapest[k] for k in space.RESOURCE_KEYS), g)
    return sorted(group_map, key=key)


class Screening:
    """A screening search under way: its record, the leaves seen, the stage nodes trained, its groups."""

    def __init__(self, strategy, candidates, estimates, requirements, run_round, eta, known=None):
        self.estimates, self.requirements, self.run_round = estimates, requirements, run_round
        alive = space.order(candidates, estimates, requirements) or space.closest(
            candidates, estimates, requirements, math.ceil(len(candidates) / eta))
        self.record = search_record.Record(strategy, len(candidates), len(space.order(candidates, estimates,
                                                                                             requirements)))
        self.groups, self.seen, self.trained = groups(alive), dict(known or {}), set()
        self.screens = {g: screen(cs[0]) for g, cs in self.groups.items()}
        self.reference = [c for c in alive if not c.stages()]

    def go(self, batch, epochs, screen_round=False):
        """Fine-tune `batch` from the baseline for `epochs` (a node trained before is cached, not counted)."""
        spent = space.round_epochs(batch, epochs, done=self.trained)
        leaves = self.run_round(batch, epochs, resume=False)
        stop.keep(self.seen, leaves, self.requirements)
        self.trained.update(space.stage_nodes(batch, epochs))
        self.record.add_round(epochs, batch, spent, leaves, screen=screen_round)
        return leaves

    def screen_round(self, min_epochs, budget_epochs, out_of_time):
        """The screening round, or None when the budget or the time stops it first (record.stopped)."""
        batch = self.reference + list(self.screens.values())
        if out_of_time() or (budget_epochs is not None and space.round_epochs(batch, min_epochs) > budget_epochs):
            self.record.stopped = "wall time" if out_of_time() else "budget"
            return None
        return self.go(batch, min_epochs, screen_round=True)

    def groups_rounds(self, screened, max_epochs, eta, budget_epochs, out_of_time):
        """Train the ranked groups' every candidate fully, best first, as the budget allows; then answer."""
        record = self.record
        record.then = "groups"
        pending = rank(self.groups, {g: screened[s.id] for g, s in self.screens.items()}, self.estimates,
                       self.requirements)
        per_round = max(1, math.ceil(len(pending) / eta))
        while True:
            chosen = stop.stop_leaf(self.seen, [c for g in pending for c in self.groups[g]], self.estimates,
                                    self.requirements)
            if chosen:
                record.chosen, record.stopped, record.leaf = chosen, "met", self.seen[chosen]
                return record
            if not pending:
                break
            if out_of_time():
                record.stopped = "wall time"
                break
            batch, taken = [], 0
            for g in pending[:per_round]:  # best first, while the budget allows
                more = batch + [self.screens[g]] + [c for c in self.groups[g] if c != self.screens[g]]
                spent = record.epochs_spent + space.round_epochs(more, max_epochs, done=self.trained)
                if budget_epochs is not None and spent > budget_epochs:
                    break
                batch, taken = more, taken + 1
            if not batch:
                record.stopped = "budget"
                break
            pending = pending[taken:]
            self.go(batch, max_epochs)
        return stop.answer(record, self.seen, self.estimates, self.requirements)


def run(candidates, estimates, requirements, run_round, *, min_epochs=1, max_epochs=4, eta=2, budget_epochs=None,
        out_of_time=lambda: False, known=None):
    """Screen, then train the ranked groups fully (module docstring); `run_round(candidates, epochs,
    resume=False)` fine-tunes every stage from the baseline; `known`: leaves already built (the
    reference's), which may be the answer too. Returns a search.record.Record whose
    first round is marked `screen`."""
    s = Screening("prefix", candidates, estimates, requirements, run_round, eta, known)
    screened = s.screen_round(min_epochs, budget_epochs, out_of_time)
    if screened is None:
        return stop.answer(s.record, s.seen, estimates, requirements)
    return s.groups_rounds(screened, max_epochs, eta, budget_epochs, out_of_time)
