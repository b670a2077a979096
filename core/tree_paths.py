"""The deployment tree: every path from the trained baseline to a fully INT8 leaf.

A path is the tuple of stages applied before INT8 conversion; a path without "qat" ends in PTQ.
Paths that share a prefix share its stages (one pruned model feeds all its children). Every path
also exists below channel pruning (thin_...): the thinned model is a smaller dense baseline.
"""
import contextlib

_UNTHINNED = {
    "ptq": (),
    "qat": ("qat",),
    "prune_ptq": ("prune",),
    "prune_pqat": ("prune", "qat"),
    "prune_cluster_ptq": ("prune", "cluster"),
    "prune_cluster_pcqat": ("prune", "cluster", "qat"),
    "cluster_ptq": ("cluster",),
    "cluster_cqat": ("cluster", "qat"),
}  # depth-first order: the order of tables and of the drawn tree
THIN = "thin"  # channel pruning to NPU-aligned widths (core.techniques.channels): the tree hangs below it
# Every path again below the thinned model: thin_ptq, thin_qat, thin_prune_ptq, ..., thin_prune_cluster_pcqat.
PATHS = {**_UNTHINNED, **{f"{THIN}_{name}": (THIN, *steps) for name, steps in _UNTHINNED.items()}}
# Built only when named: thinning changes the architecture and compiles with Vela while it chooses.
OPT_IN = tuple(p for p, steps in PATHS.items() if THIN in steps)
# The preserving QAT scheme a prefix calls for (what PreservingQAT's "auto" picks for its model).
QAT_SCHEME = {(): "qat", ("prune",): "pqat", ("cluster",): "cqat", ("prune", "cluster"): "pcqat"}


def qat_scheme(before):
    """The QAT scheme after the stages `before`: a thinned model is a smaller dense one, so thinning
    does not change what is to be preserved."""
    return QAT_SCHEME[tuple(s for s in before if s != THIN)]


REFERENCE = "ptq"  # the baseline's INT8: every leaf's accuracy drop is measured against it


def expand(paths):
    """'all' (every path but the OPT_IN ones) or a list of path names -> the ordered list of names, the
    reference leaf included."""
    names = [p for p in PATHS if p not in OPT_IN] if paths == "all" else list(paths)
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
        names[-1] = qat_scheme(steps[:-1]).upper()
    else:
        names.append("PTQ")
    return " -> ".join(names)


class PathError(Exception):
    """A failure of one path's own stage that the same inputs and parameters would meet again: TFMOT or
    the converter refusing the model, `strict` layer checks, Vela refusing it. The path is marked failed
    (components.common.PathStage) and its siblings go on; any other error fails the execution, which
    is not cached and runs again next time."""


class RefusedError(PathError):
    """A technique, the converter or the compiler refused the model (`refused`)."""


# Errors whose cause may be gone on the next run (memory, storage, a service): never a path's result.
TRANSIENT = (OSError, MemoryError, TimeoutError, ConnectionError)
TRANSIENT_TF = ("ResourceExhaustedError", "UnavailableError", "DeadlineExceededError", "AbortedError",
                "CancelledError")


@contextlib.contextmanager
def refused(what):
    """Errors in the block are `what` refusing the model (RefusedError, a PathError), except collabopt's
    own (bad input, a config mistake: they say what they are) and transient ones (TRANSIENT)."""
    try:
        yield
    except PathError:
        raise
    except Exception as e:
        if isinstance(e, TRANSIENT) or type(e).__name__ in TRANSIENT_TF or type(e).__module__.startswith("collabopt."):
            raise
        text = " ".join(str(e).split())
        raise RefusedError(f"{what}: {type(e).__name__}: {text[:600]}" if text else f"{what}: {type(e).__name__}") \
            from e
