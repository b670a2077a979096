"""Per-layer schedules from a sensitivity table: spend a metric-drop budget where the NPU saves most.

A sensitivity row (core/sensitivity.py) is one layer changed alone, no fine-tuning:
{"layer", "technique": "prune"|"cluster", "value": sparsity or clusters, "drop",
 "saved": {"encoded_weights_bytes": B, "npu_cycles": C}}. Drops are taken as additive across
layers (the usual first-order assumption of per-layer compression-ratio selection).
"""
# Stronger setting first tells which of two options of a layer goes further.
STRONGER = {"prune": lambda a, b: a > b, "cluster": lambda a, b: a < b}
DEFAULT_WEIGHTS = {"encoded_weights_bytes": 1.0, "npu_cycles": 1.0}


def saving(row, totals, weights=None):
    """What the change saves on the NPU, each saved number as a fraction of the model's total and
    weighted (default: encoded weights and cycles alike)."""
    weights = DEFAULT_WEIGHTS if weights is None else weights
    return sum(w * row["saved"].get(k, 0) / totals[k] for k, w in weights.items() if totals.get(k))


def build(rows, technique, budget, totals, weights=None):
    """{layer: value} for `technique` whose summed drop stays within `budget`, chosen greedily by
    NPU saving per unit of drop (a change that costs nothing or gains goes first, the
    largest saving among those first). A layer may move to a stronger setting later, paying the
    difference. Options that save nothing are never taken. Returns (schedule, spent)."""
    options = {}
    for r in rows:
        if r["technique"] == technique and saving(r, totals, weights) > 0:
            options.setdefault(r["layer"], []).append(r)
    chosen, spent = {}, 0.0
    stronger = STRONGER[technique]
    while True:
        best = None
        for layer, opts in options.items():
            now = chosen.get(layer)
            for r in opts:
                if now is not None and not stronger(r["value"], now["value"]):
                    continue
                d_drop = r["drop"] - (now["drop"] if now else 0.0)
                d_save = saving(r, totals, weights) - (saving(now, totals, weights) if now else 0.0)
                if d_save <= 0 or spent + d_drop > budget + 1e-12:
                    continue
                key = (d_drop <= 0, d_save / d_drop if d_drop > 0 else d_save, d_save)
                if best is None or key > best[0]:
                    best = (key, layer, r, d_drop)
        if best is None:
            return {layer: r["value"] for layer, r in sorted(chosen.items())}, spent
        _, layer, r, d_drop = best
        chosen[layer] = r
        spent += d_drop
