"""When a search may stop, and what it answers: the stop rule (a leaf that meets every requirement and
that no pending candidate could dominate), the leaves kept per candidate, and the best so far when
nothing met. Shared by every strategy."""
from collabopt.search.space import OBJECTIVES, REQUIREMENTS, RESOURCE_KEYS, misses


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
    """Nothing feasible: per objective the best leaf, per requirement the smallest miss of any leaf (0
    if some leaf meets it), and per missed requirement the leaf closest to it and its number:
    {"best": {objective: (id, value)}, "misses": {req: amount}, "closest": {req: (id, value)}}."""
    best = {k: min(((cid, leaf[k]) for cid, leaf in leaves.items()), key=lambda t: (t[1], t[0]))
            for k in OBJECTIVES} if leaves else {}
    miss, closest = {}, {}
    for req in (r for r in REQUIREMENTS if requirements.get(r) is not None and leaves):
        by, cid = min((misses(leaf, requirements).get(req, 0.0), cid) for cid, leaf in leaves.items())
        if by > 0:
            miss[req], closest[req] = by, (cid, leaves[cid].get(REQUIREMENTS[req]))
    return {"best": best, "misses": miss, "closest": closest}


def _number(v):
    if v is None or v == float("inf"):
        return "not measured"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def named_misses(record):
    """One line per requirement no leaf met: by how much the closest leaf misses it, which leaf, and its
    number, e.g. "max_arena_bytes 4,096: missed by 4,544 (closest: ptq, tflm_arena_bytes 8,640)"."""
    best = record.best_so_far or {}
    closest = best.get("closest", {})
    return [f"{req} {_number(record.requirements.get(req))}: missed by {m:,.4g}"
            + (f" (closest: {closest[req][0]}, {REQUIREMENTS[req]} {_number(closest[req][1])})" if req in closest else "")
            for req, m in best.get("misses", {}).items()]


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
        record.chosen, record.leaf = chosen, seen[chosen]
    record.best_so_far = best_so_far(seen, requirements)
    return record
