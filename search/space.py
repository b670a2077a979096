"""The search space and its costs: candidates (a path and its parameters), the requirements a leaf
is judged by, the cheap-before-expensive order of one-shot estimates, and what a round of
fine-tuning costs in epochs.

Pure: a leaf here is a flat dict of numbers (`drop`, NPU_NUMBERS and the TFLM arena); who computes
them (one-shot Vela estimates, fine-tuned TFX trials) is the caller's business. A one-shot estimate
has the NPU numbers only: the arena is measured by TFLM on a trial's leaf, never estimated.
"""
import dataclasses

from collabopt.core import tree_paths
from collabopt.core.evaluation import gates, metrics

# requirement -> the leaf number it bounds (every one an upper bound); `drop`: the INT8 eval metric's
# drop vs the ptq leaf in the metric's units, as requirements.max_metric_drop
REQUIREMENTS = {
    "max_metric_drop": "drop",
    "max_encoded_weights_bytes": "encoded_weights_bytes",
    "max_flash_bytes": "flash_bytes",
    "max_npu_cycles": "npu_cycles",
    "max_npu_inference_time_s": "inference_time_s",
    "max_sram_bytes": "sram_bytes",
    "max_arena_bytes": gates.ARENA_BYTES,  # measured on the trial's leaf only (TFLM)
}
NPU_NUMBERS = ("encoded_weights_bytes", "npu_cycles", "inference_time_s", "sram_bytes", "flash_bytes")  # estimated too
RESOURCE_KEYS = ("encoded_weights_bytes", "npu_cycles")  # what a cheaper candidate is cheaper in
OBJECTIVES = ("drop", "encoded_weights_bytes", "npu_cycles")  # all minimized
FINE_TUNED = (tree_paths.THIN, "prune", "cluster", "qat")
# requirements a thinner model meets and a pruned / clustered one of the same widths does not (issue 23:
# on Ethos-U55/U65 MAC cycles depend on shapes only): with one of them and no search.paths, every path
# is searched below channel pruning too
LATENCY = ("max_npu_inference_time_s", "max_npu_cycles")
DEFAULT_KEEPS = [0.75, 0.5]  # thin keep ratios without search.thin_keep_ratios or a latency limit to fit them to
KEEP_GRID = [round(0.95 - 0.05 * i, 2) for i in range(16)]  # 0.95 ... 0.2: where a fitted keep ratio is sought


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
    keep: float = None  # thin paths: the fraction of the thinnable channels channel pruning keeps

    @property
    def id(self):
        parts = [self.path]
        if self.keep is not None:
            parts.append(keep_token(self.keep))
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
        rung left (prune / cluster; a QAT model is not wrapped for QAT again, a thinned one not thinned again)."""
        return bool(self.stages()) and self.stages()[-1] in ("prune", "cluster")

    def stage_tokens(self):
        """Per stage, the token of its parameters: s50 / k8 / a schedule's name; "" for QAT (none)."""
        out = []
        for step in self.stages():
            if step == tree_paths.THIN:
                out.append(keep_token(self.keep))
            elif step == "prune":
                out.append(self.schedule if self.layer_sparsity else f"s{round(self.sparsity * 100)}")
            elif step == "cluster":
                out.append(self.schedule if self.layer_clusters else f"k{self.clusters}")
            else:
                out.append("")
        return out

    def stage_keys(self):
        """Per stage of the path, the key of the node that computes it: equal keys are one node
        (candidates that share a prefix with equal parameters share its fine-tuning)."""
        keys, prefix = [], []
        for step in self.stages():
            if step == tree_paths.THIN:
                prefix.append(keep_token(self.keep))
            elif step == "prune":
                prefix.append(f"s{round(self.sparsity * 100)}" if not self.layer_sparsity else self.schedule)
            elif step == "cluster":
                prefix.append(f"k{self.clusters}" if not self.layer_clusters else self.schedule)
            prefix.append(step)
            keys.append("_".join(prefix))
        return keys


def keep_token(keep):
    """A thin keep ratio's token in ids and node keys: 0.5 -> t50."""
    return f"t{round(keep * 100)}"


def space(paths, sparsities=(), clusters=(), schedules=(), keeps=()):
    """Every candidate: paths x thin keep ratio x target sparsity x clusters (each where the path has
    that stage), plus per schedule ({"name", "prune": {layer: s}, "cluster": {layer: k}}) the unthinned
    paths it fits (every fine-tuned stage of the path has a map in it; the schedules are measured on
    the unthinned model)."""
    out = []
    for path in tree_paths.expand(paths):
        steps = tree_paths.PATHS[path]
        for t in (keeps if tree_paths.THIN in steps else [None]):
            for s in (sparsities if "prune" in steps else [None]):
                for k in (clusters if "cluster" in steps else [None]):
                    out.append(Candidate(path, s, k, keep=t))
        for sch in (schedules if tree_paths.THIN not in steps else ()):
            needs = [t for t in ("prune", "cluster") if t in steps]
            if needs and all(sch.get(t) for t in needs):
                out.append(Candidate(
                    path, schedule=sch["name"],
                    layer_sparsity=tuple(sorted(sch["prune"].items())) if "prune" in steps else (),
                    layer_clusters=tuple(sorted(sch["cluster"].items())) if "cluster" in steps else ()))
    return out


def searched_paths(cfg):
    """The paths a merged config's search covers: search.paths, else the config's paths and, when a
    LATENCY requirement is set, each of them below channel pruning too (thin_...): only fewer
    channels cut NPU compute, so a time limit brings thinning in."""
    s = cfg["search"]
    if s["paths"]:
        return tree_paths.expand(s["paths"])
    paths = tree_paths.expand(cfg["paths"])
    if any(s["requirements"].get(r) is not None for r in LATENCY):
        thin = [f"{tree_paths.THIN}_{p}" for p in paths if f"{tree_paths.THIN}_{p}" in tree_paths.PATHS]
        paths = tree_paths.expand(paths + thin)
    return paths


def of_config(cfg, schedules=()):
    """The candidates of a merged config's search section (searched_paths; keep_ratios)."""
    s = cfg["search"]
    return space(searched_paths(cfg), s["sparsities"], s["clusters"], schedules, keep_ratios(cfg))


def keep_ratios(cfg):
    """The thin keep ratios of a merged config: search.thin_keep_ratios (given, or fitted by the estimates:
    with_keeps), else DEFAULT_KEEPS."""
    return cfg["search"]["thin_keep_ratios"] or DEFAULT_KEEPS


def with_keeps(cfg, keeps):
    """`cfg` with the thin keep ratios set to `keeps` (fitted to its latency limit)."""
    return {**cfg, "search": {**cfg["search"], "thin_keep_ratios": list(keeps)}}


def fits_latency(cfg):
    """True when the keep ratios are to be fitted to a latency limit: none given, a LATENCY requirement
    set, and a thinned path in the space."""
    s = cfg["search"]
    return (s["thin_keep_ratios"] is None and any(s["requirements"].get(r) is not None for r in LATENCY)
            and any(tree_paths.THIN in tree_paths.PATHS[p] for p in searched_paths(cfg)))


def fit_keeps(meets, grid=KEEP_GRID):
    """The keep ratios a latency limit asks for: the largest of `grid` (descending) whose thinned model
    meets it (`meets(keep)`: by its one-shot NPU numbers; fewer channels never cost more), found by
    bisection, and the one 0.1 below it (a margin: the one-shot time is not the trial's to the cycle).
    When none meets it: the smallest, whose trial then misses it by name."""
    if not meets(grid[-1]):
        return [grid[-1]]
    lo, hi = 0, len(grid) - 1  # grid[hi] meets it
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(grid[mid]):
            hi = mid
        else:
            lo = mid + 1
    return [grid[hi]] + ([grid[hi + 2]] if hi + 2 < len(grid) else [])


def misses(leaf, requirements):
    """{requirement: by how much the leaf is over it} for each requirement it misses (the gate's rule,
    core.evaluation.gates.over: a number the leaf lacks misses by inf)."""
    out = {}
    for req, key in REQUIREMENTS.items():
        limit = requirements.get(req)
        by = 0 if limit is None else gates.over(leaf.get(key), limit)
        if by:
            out[req] = by
    return out


def estimated(requirements):
    """{requirement: leaf number} of the set requirements a one-shot estimate can judge: the NPU numbers
    (not the drop: fine-tuning recovers it; not the arena: only a trial's leaf measures it)."""
    return {r: k for r, k in REQUIREMENTS.items() if k in NPU_NUMBERS and requirements.get(r) is not None}


def could_meet(estimate, requirements, slack=0.05):
    """The one-shot estimate's NPU numbers are within the resource requirements (+ slack: fine-tuning
    moves them a little)."""
    return all(estimate[k] <= requirements[r] * (1 + slack) for r, k in estimated(requirements).items())


def order(candidates, estimates, requirements):
    """Cheap before expensive: the candidates whose estimates could meet the requirements, smallest
    estimated NPU cost first (encoded weights, then cycles, then estimated drop)."""
    ok = [c for c in candidates if could_meet(estimates[c.id], requirements)]
    return sorted(ok, key=lambda c: (*(estimates[c.id][k] for k in RESOURCE_KEYS), estimates[c.id]["drop"], c.id))


def closest(candidates, estimates, requirements, keep):
    """None could meet the resource requirements by estimate: the `keep` whose estimates miss them by
    the least (largest relative miss), so the search still returns leaves and their misses."""
    def worst(c):
        return max((estimates[c.id][k] / requirements[r] for r, k in estimated(requirements).items()),
                   default=0.0)
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
