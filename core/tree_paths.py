"""The deployment tree: every path from the trained baseline to a fully INT8 leaf.

A path is the tuple of stages applied before INT8 conversion; a path without "qat" ends in PTQ.
Paths that share a prefix share its stages (one pruned model feeds all its children).
"""
PATHS = {
    "ptq": (),
    "qat": ("qat",),
    "prune_ptq": ("prune",),
    "prune_pqat": ("prune", "qat"),
    "prune_cluster_ptq": ("prune", "cluster"),
    "prune_cluster_pcqat": ("prune", "cluster", "qat"),
    "cluster_ptq": ("cluster",),
    "cluster_cqat": ("cluster", "qat"),
}  # depth-first order: the order of tables and of the drawn tree
# The preserving QAT scheme a prefix calls for (what PreservingQAT's "auto" picks for its model).
QAT_SCHEME = {(): "qat", ("prune",): "pqat", ("cluster",): "cqat", ("prune", "cluster"): "pcqat"}
REFERENCE = "ptq"  # the baseline's INT8: every leaf's accuracy drop is measured against it


def expand(paths):
    """'all' or a list of path names -> the ordered list of names, the reference leaf included."""
    names = list(PATHS) if paths == "all" else list(paths)
    unknown = [p for p in names if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {unknown}; known: {', '.join(PATHS)} or 'all'")
    return [p for p in PATHS if p in names or p == REFERENCE]


def prefixes(path):
    """The stage prefixes a path goes through, shortest first (each is one shared node)."""
    steps = PATHS[path]
    return [steps[:i] for i in range(1, len(steps) + 1)]


def label(path):
    """'prune -> cluster -> PCQAT', 'PTQ', ..."""
    steps = PATHS[path]
    names = [("sparsity-preserving cluster" if s == "cluster" and "prune" in steps else s) for s in steps]
    if steps and steps[-1] == "qat":
        names[-1] = QAT_SCHEME[steps[:-1]].upper()
    else:
        names.append("PTQ")
    return " -> ".join(names)
