"""The "auto" strategy: screen the shared first stages as "prefix" does, then go on with successive
halving over every candidate when a screened leaf already meets max_metric_drop after the first
rung's epochs (short fine-tuning recovers the metric: many short trials pay), else train the best
groups fully as "prefix" does (a few long trials pay)."""
import math

from collabopt.search import halving, prefix, stop


def run(candidates, estimates, requirements, run_round, *, min_epochs=1, max_epochs=4, eta=2, budget_epochs=None,
        out_of_time=lambda: False, known=None):
    """Returns a search.record.Record: its screening round, then `then` ("halving" or "groups") and theirs."""
    s = prefix.Screening("auto", candidates, estimates, requirements, run_round, eta, known)
    screened = s.screen_round(min_epochs, budget_epochs, out_of_time)
    if screened is None:
        return stop.answer(s.record, s.seen, estimates, requirements)
    limit = requirements.get("max_metric_drop")
    best = min((screened[c.id]["drop"] for c in s.screens.values()), default=math.inf)  # no group: no halving
    if not (s.screens and (limit is None or best <= limit)):
        return s.groups_rounds(screened, max_epochs, eta, budget_epochs, out_of_time)
    record = s.record
    rest = halving.run(candidates, estimates, requirements, run_round, done=s.trained, min_epochs=min_epochs,
                       max_epochs=max_epochs, eta=eta, out_of_time=out_of_time, known=known,
                       budget_epochs=None if budget_epochs is None else budget_epochs - record.epochs_spent)
    for rnd in rest.rounds:  # the screened nodes are halving's first rung's: not counted twice
        stop.keep(s.seen, rnd.leaves, requirements)
    record.then, record.stopped = "halving", rest.stopped
    record.rounds += rest.rounds
    record.epochs_spent += rest.epochs_spent
    if rest.chosen:
        record.chosen, record.leaf = rest.chosen, rest.leaf
        return record
    return stop.answer(record, s.seen, estimates, requirements)
