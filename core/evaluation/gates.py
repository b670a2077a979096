"""The gates a leaf passes before it is blessed: what its path promised survived into the flatbuffer
(preservation), the user's requirements, the device runtime (TFLM) runs it, and, when retraining,
not worse than the leaf deployed now.
Each returns the reasons a leaf fails ([] = passes)."""
import math

from collabopt.core.evaluation import metrics

ARENA_BYTES = "tflm_arena_bytes"  # leaf.json: the TFLM arena to declare on the CPU path (core/firmware/device_check)
TOLERANCE = 1e-9  # a float at its limit passes


def over(value, limit):
    """By how much a measured number exceeds its upper bound (a max_* requirement): 0 within it, inf
    when it was not measured (nothing shows it fits). The one rule of every upper bound: the tree's
    gate and the search's (search/space.py) both call it."""
    if value is None:
        return math.inf
    return value - limit if value > limit + TOLERANCE else 0


def preservation(layers, promised, excluded=None, tolerance=0.02):
    """Per Conv2D/Dense kernel of the flatbuffer: did the promised sparsity and clusters survive?

    Returns one line per broken layer. DEPTHWISE_CONV_2D kernels are reported but not judged:
    TFMOT clusters no depthwise kernels and its CQAT does not preserve them. Layers a technique left
    out (`excluded`: {technique: {layer: why}}) promised nothing for it. A per-layer promise
    (`layer_sparsity` / `layer_clusters`: {layer: value}) is judged per layer. An `m_by_n` promise
    is judged per aligned group (its M/N sparsity alone would pass a kernel whose zeros moved, and
    fail one whose input channels are fewer than N, where TFMOT pads and prunes nothing).
    """
    failures = []
    unpruned, unclustered = (set((excluded or {}).get(t, {})) for t in ("prune", "cluster"))
    m_by_n = promised.get("m_by_n")
    for l in layers:
        if l["op"] == "DEPTHWISE_CONV_2D":
            continue
        target = (promised.get("layer_sparsity") or {}).get(l["layer"], promised.get("target_sparsity"))
        k = (promised.get("layer_clusters") or {}).get(l["layer"], promised.get("number_of_clusters"))
        if m_by_n and l["layer"] not in unpruned:
            failures += m_by_n_failures(l, m_by_n)
        elif target and l["layer"] not in unpruned and l["sparsity"] < target - tolerance:
            failures.append(f"{l['layer']}: sparsity {l['sparsity']:.3f} < {target - tolerance:.3f}")
        # Sparsity-preserving clustering keeps the zero as a centroid among the k.
        if k and l["layer"] not in unclustered and l["max_unique_per_channel"] > k:
            failures.append(f"{l['layer']}: {l['max_unique_per_channel']} distinct values in an "
                            f"output channel > {k} clusters")
    return failures


def m_by_n_failures(layer, m_by_n):
    """[] if every aligned group of the layer's INT8 kernel (flatbuffer.layer_stats) keeps the M:N
    pattern, else the one line naming the layer and how many groups broke it."""
    m, n = m_by_n
    if list(layer.get("m_by_n") or []) != [m, n]:
        return [f"{layer['layer']}: its {m}:{n} pattern was not counted in the flatbuffer"]
    if not layer["m_by_n_broken"]:
        return []
    return [f"{layer['layer']}: {layer['m_by_n_broken']} of {layer['m_by_n_groups']} aligned groups of {n} "
            f"input channels hold fewer than {m} zeros ({m}:{n} sparsity lost)"]


def allowed_drop(requirements, eval_metric):
    """The requirement's max INT8 metric drop in the metric's units (None: no limit):
    `max_metric_drop`, or for top-1 accuracy `max_int8_accuracy_drop_pp` / 100."""
    req = requirements or {}
    if req.get("max_metric_drop") is not None:
        return req["max_metric_drop"]
    pp = req.get("max_int8_accuracy_drop_pp")
    return pp / 100.0 if pp is not None and eval_metric == metrics.ACCURACY else None


def gate(leaf, requirements, baseline_int8_metric):
    """Why `leaf` misses the user's requirements or lost what its path promised; [] = blessed.
    `baseline_int8_metric`: the reference leaf's INT8 eval metric, the drop is measured from."""
    req = requirements or {}
    reasons = []
    name, value = metrics.of_leaf(leaf)
    limit = allowed_drop(req, name)
    if limit is not None:
        lost = round(metrics.drop(name, baseline_int8_metric, value), 11)  # at the limit passes
        if lost > round(limit, 11):
            what = "INT8 accuracy" if name == metrics.ACCURACY else f"INT8 {metrics.title(name, leaf.get('top_k', 5))}"
            shown = f"{req['max_int8_accuracy_drop_pp']} pp" if req.get("max_metric_drop") is None \
                else req["max_metric_drop"]  # as configured
            side = "below" if metrics.get(name).higher_is_better else "above"
            reasons.append(f"{what} {metrics.fmt(name, value)} is {metrics.fmt_drop(name, lost)} {side} the "
                           f"baseline's {metrics.fmt(name, baseline_int8_metric)} (max drop {shown})")
    max_gzip = req.get("max_gzip_bytes")
    if max_gzip is not None and over(leaf["gzip_bytes"], max_gzip):
        reasons.append(f"gzip size {leaf['gzip_bytes']:,} B > max {max_gzip:,} B")
    max_time = req.get("max_npu_inference_time_s")
    if max_time is not None:
        target = req.get("npu_target") or next(iter(leaf["npu"]), None)
        est = leaf["npu"].get(target)
        if est is None:
            reasons.append(f"no NPU estimate for {target!r} to check max_npu_inference_time_s")
        elif over(est["inference_time_s"], max_time):
            reasons.append(f"{target} inference time {est['inference_time_s'] * 1e3:.3f} ms > max "
                           f"{max_time * 1e3:.3f} ms")
    reasons += sram(leaf, req)
    reasons += device(leaf, req)
    if leaf.get("preservation_failures"):
        reasons.append("preservation: " + "; ".join(leaf["preservation_failures"]))
    return reasons


def sram(leaf, requirements):
    """Why the leaf's Vela SRAM misses max_sram_bytes: on the requirement's npu_target, else on every
    target it was compiled for (each is a device it may ship to)."""
    limit = requirements.get("max_sram_bytes")
    if limit is None:
        return []
    targets = [requirements["npu_target"]] if requirements.get("npu_target") else list(leaf["npu"])
    if not targets:
        return ["no NPU estimate to check max_sram_bytes"]
    reasons = []
    for target in targets:
        value = (leaf["npu"].get(target) or {}).get("sram_bytes")
        if value is None:
            reasons.append(f"no NPU estimate for {target!r} to check max_sram_bytes")
        elif over(value, limit):
            reasons.append(f"{target} Vela SRAM {value:,} B > max {limit:,} B")
    return reasons


def device(leaf, requirements):
    """Why the leaf fails the device requirements (TFLM), when there are any: TFLM cannot load or run
    it; its tensor arena exceeds max_arena_bytes; its answers differ from LiteRT's by more than
    max_tflm_lsb. Without a device requirement TFLM's findings are reported (tflm_error), not gated:
    the host's TFLM interpreter has crashed on models LiteRT and Vela take."""
    error, arena, lsb = leaf.get("tflm_error"), leaf.get(ARENA_BYTES), leaf.get("tflm_max_lsb")
    max_arena, max_lsb = requirements.get("max_arena_bytes"), requirements.get("max_tflm_lsb")
    if max_arena is None and max_lsb is None:
        return []
    if error:
        return [f"TFLM's interpreter cannot run it: {error}"]
    reasons = []
    for name, limit, value in (("max_arena_bytes", max_arena, arena), ("max_tflm_lsb", max_lsb, lsb)):
        if limit is not None and value is None:
            reasons.append(f"no TFLM measurement to check {name}")
    if max_arena is not None and arena is not None and over(arena, max_arena):
        reasons.append(f"TFLM tensor arena {arena:,} B > max {max_arena:,} B")
    if max_lsb is not None and lsb is not None and over(lsb, max_lsb):
        reasons.append(f"TFLM's answers differ from LiteRT's by {lsb} LSB > max {max_lsb} LSB "
                       f"(on {leaf['tflm_examples']} eval examples)")
    return reasons


def not_worse(leaf, previous, requirements=None):
    """Retraining: why `leaf` is worse than the leaf deployed now (`previous`); [] = not worse.
    Compared: the INT8 eval metric (when both were measured by the same one), gzip bytes, and the
    NPU time of the requirement's target (or the first target both were estimated on)."""
    reasons = []
    tag = f"worse than deployed version {previous.get('version', '?')}"
    (name, new), (old_name, old) = metrics.of_leaf(leaf), metrics.of_leaf(previous)
    if name == old_name and metrics.drop(name, old, new) > 0:
        what = "accuracy" if name == metrics.ACCURACY else name
        sign = "<" if metrics.get(name).higher_is_better else ">"
        reasons.append(f"{tag}: INT8 {what} {metrics.fmt(name, new)} {sign} {metrics.fmt(name, old)}")
    if leaf["gzip_bytes"] > previous["gzip_bytes"]:
        reasons.append(f"{tag}: gzip size {leaf['gzip_bytes']:,} B > {previous['gzip_bytes']:,} B")
    target = (requirements or {}).get("npu_target") or next(
        (t for t in leaf["npu"] if t in previous.get("npu", {})), None)
    if target and target in leaf["npu"] and target in previous.get("npu", {}):
        new, old = leaf["npu"][target]["inference_time_s"], previous["npu"][target]["inference_time_s"]
        if new > old:
            reasons.append(f"{tag}: {target} inference time {new * 1e3:.4f} ms > {old * 1e3:.4f} ms")
    return reasons
