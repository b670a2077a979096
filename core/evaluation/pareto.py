"""Pareto fronts of leaves over objectives with directions, and how much of one front another covers.

Pure functions on tuples of numbers: a point is one leaf's objectives, `directions` says per
objective whether smaller ("min") or larger ("max") is better.
"""

import math

MIN, MAX = "min", "max"


def _check(directions):
    for d in directions:
        if d not in (MIN, MAX):
            raise ValueError(f"direction {d!r} is neither {MIN!r} nor {MAX!r}")


def _as_min(point, directions):
    """The point with every objective turned into one to minimize."""
    if len(point) != len(directions):
        raise ValueError(f"point {tuple(point)} has {len(point)} objectives, directions {len(directions)}")
    return tuple(v if d == MIN else -v for v, d in zip(point, directions))


def dominates(a, b, directions):
    """a is no worse than b in every objective and better in at least one."""
    a, b = _as_min(a, directions), _as_min(b, directions)
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(points, directions):
    """Indices of the non-dominated points, in input order (equal points are all kept)."""
    _check(directions)
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)]


def ranks(points, directions):
    """Non-dominated sorting: rank 0 for the front, 1 for the front once it is removed, ..."""
    left, out, rank = set(range(len(points))), [0] * len(points), 0
    while left:
        idx = sorted(left)
        for k in front([points[i] for i in idx], directions):
            out[idx[k]] = rank
            left.discard(idx[k])
        rank += 1
    return out


def crowding(points, directions):
    """NSGA-II crowding distance of each point within `points` (one front): per objective, the two
    extremes get inf and the others the gap between their neighbours over the objective's range,
    summed; an objective on which all points are equal adds nothing. Larger: a lonelier point."""
    _check(directions)
    pts = [_as_min(p, directions) for p in points]
    out = [0.0] * len(pts)
    for k in range(len(directions)):
        idx = sorted(range(len(pts)), key=lambda i: pts[i][k])
        span = pts[idx[-1]][k] - pts[idx[0]][k] if pts else 0
        if not span or not math.isfinite(span):  # all equal, or a failed (inf) trial
            continue
        out[idx[0]] = out[idx[-1]] = float("inf")
        for a, i, b in zip(idx, idx[1:], idx[2:]):
            out[i] += (pts[b][k] - pts[a][k]) / span
    return out


def hypervolume_2d(points, reference, directions):
    """Area dominated by `points` and bounded by `reference` (a point worse than every useful one);
    points not better than the reference in both objectives add nothing."""
    _check(directions)
    ref = _as_min(reference, directions)
    pts = sorted({_as_min(p, directions) for p in points if all(
        v < r for v, r in zip(_as_min(p, directions), ref))})
    area, best_y = 0.0, ref[1]
    for x, y in pts:  # x ascending: each point adds the strip below the best y so far
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def coverage(found, reference_front, reference, directions):
    """Hypervolume of `found` over that of `reference_front` (1.0: as good a front; 0 if the
    reference front has no volume)."""
    whole = hypervolume_2d(reference_front, reference, directions)
    return hypervolume_2d(found, reference, directions) / whole if whole else 0.0
