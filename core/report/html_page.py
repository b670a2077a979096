"""The optimization report: one self-contained HTML page (plots embedded as PNG) per run.

Pure: leaf dicts (leaves.evaluate_leaf's leaf.json) and kernel histories in, HTML out.
"""
import base64
import datetime
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from collabopt.core.evaluation import metrics  # noqa: E402
from collabopt.core import tree_paths
from collabopt.core.report import npu_layers
from collabopt.core.artifact_files import ERROR, EXCLUDED_LAYERS, FAILED, INT8_STAGE  # noqa: E402


CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}td.l{text-align:left}
tr.blessed td{background:#e8f6e8}tr.rejected td{background:#fbeaea}img{max-width:100%}
.reason{font-size:11px;color:#933;text-align:left}h2{margin-top:1.6em}"""


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _f(v, spec, suffix=""):
    return "-" if v is None else format(v, spec) + suffix


def targets_of(leaves):
    seen = []
    for leaf in leaves:
        seen += [t for t in leaf.get("npu", {}) if t not in seen]
    return seen


def _storage(est):
    """Flash bytes; Vela's default Ethos-U65/U85 systems keep the model in DRAM instead."""
    if not est.get("flash_bytes") and est.get("dram_bytes"):
        return f"DRAM {est['dram_bytes']:,} B"
    return f"{_f(est.get('flash_bytes'), ',d')} B"


def metric_of(leaves):
    """(eval metric, its column title, its name in text) of a run's leaves (one metric per run)."""
    name = metrics.of_leaf(leaves[0])[0] if leaves else metrics.ACCURACY
    if name == metrics.ACCURACY:
        return name, "acc", "accuracy"
    return name, *[metrics.title(name, leaves[0].get("top_k", 5))] * 2


def device(leaf):
    """TFLM against LiteRT: the largest output difference and the share of top-1 answers that differ."""
    if leaf.get("tflm_error"):
        return "cannot run"
    if leaf.get("tflm_max_lsb") is None:
        return "-"
    return f"{leaf['tflm_max_lsb']} LSB, {leaf['tflm_top1_differ_rate']:.1%} differ ({leaf['tflm_examples']})"


def table(leaves):
    targets = targets_of(leaves)
    name, what, _ = metric_of(leaves)
    drop = "drop (pp)" if metrics.get(name).fraction else "drop"
    head = ["path", f"FP32 / QAT {what}", f"INT8 {what}", drop, "bytes -> gzip", "saving", "sparsity",
            "clusters", "uniq/ch", "uniq/tensor", "TFLM arena", "TFLM vs LiteRT"] + [
                f"{t}<br>cycles / flash / SRAM" for t in targets] + ["blessed"]
    rows = []
    for leaf in leaves:
        npu = [f"{_f(leaf['npu'][t]['npu_cycles'], ',d')} / {_storage(leaf['npu'][t])} / "
               f"{_f(leaf['npu'][t].get('sram_bytes'), ',d')} B"
               if t in leaf.get("npu", {}) else "-" for t in targets]
        reasons = "".join(f'<div class="reason">{html.escape(r)}</div>' for r in leaf.get("reasons", []))
        cells = [f'<td class="l">{html.escape(tree_paths.label(leaf["path"]))}</td>',
                 *(f"<td>{c}</td>" for c in (
                     metrics.fmt(name, metrics.of_leaf(leaf, "fp32_")[1]), metrics.fmt(name, metrics.of_leaf(leaf)[1]),
                     metrics.fmt_drop(name, leaf.get("metric_drop"), "+").removesuffix(" pp"),
                     f"{leaf['tflite_bytes']:,} -> {leaf['gzip_bytes']:,}", _f(leaf["saving_pct"], ".2f", "%"),
                     _f(leaf["sparsity"], ".1%"), leaf.get("promises", {}).get("number_of_clusters") or "-",
                     leaf["max_unique_per_channel"], leaf["max_unique_per_tensor"],
                     _f(leaf.get("tflm_arena_bytes"), ",d", " B"), device(leaf), *npu)),
                 f'<td class="l">{"yes" if leaf["blessed"] else "no"}{reasons}</td>']
        rows.append(f'<tr class="{"blessed" if leaf["blessed"] else "rejected"}">{"".join(cells)}</tr>')
    return (f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>\n" + "\n".join(rows) + "</table>")


def left_out(leaves):
    """The layers each leaf's techniques left out (TFMOT cannot handle them, or the config excluded
    them), with why; "" when none did."""
    items = [(leaf["path"], technique, layer, why) for leaf in leaves
             for technique, layers in leaf.get(EXCLUDED_LAYERS, {}).items() for layer, why in layers.items()]
    if not items:
        return ""
    rows = "\n".join(f'<tr><td class="l">{html.escape(p)}</td><td class="l">{t}</td><td class="l">{html.escape(l)}</td>'
                     f'<td class="l">{html.escape(w)}</td></tr>' for p, t, l, w in items)
    return ("<h2 id='left-out'>Layers left out</h2><table><tr><th>leaf</th><th>technique</th><th>layer</th>"
            f"<th>why</th></tr>\n{rows}</table>")


def failed_paths(failed):
    """The paths that failed (artifact_files.write_failed_leaf's leaves), with why; "" when none did."""
    if not failed:
        return ""
    rows = "\n".join(f'<tr class="rejected"><td class="l">{html.escape(tree_paths.label(l["path"]))}</td>'
                     f'<td class="l">{html.escape(l[ERROR])}</td></tr>' for l in failed)
    return ("<h2 id='failed'>Failed paths</h2><p>These paths stopped at the node named; the other paths "
            f"ran.</p><table><tr><th>path</th><th>why</th></tr>\n{rows}</table>")


def tree_figure(leaves):
    """The deployment tree left to right: stage nodes, then one box per leaf with its numbers."""
    by_path = {leaf["path"]: leaf for leaf in leaves}
    paths = [p for p in tree_paths.PATHS if p in by_path]
    fig, ax = plt.subplots(figsize=(13, 0.9 * len(paths) + 1.2))
    ax.axis("off")
    y_leaf = {p: -i for i, p in enumerate(paths)}
    # Each prefix node sits at the mean height of the leaves under it.
    nodes = {(): np.mean(list(y_leaf.values()))}
    for p in paths:
        for pre in tree_paths.prefixes(p):
            if pre and pre[-1] != "qat":
                nodes.setdefault(pre, np.mean([y_leaf[q] for q in paths if tree_paths.PATHS[q][:len(pre)] == pre]))
    names = {(): "baseline", ("prune",): "pruned", ("cluster",): "clustered",
             ("prune", "cluster"): "pruned +\nclustered", ("thin",): "thinned"}
    x_leaf = max(2, *map(len, nodes)) + 1.2  # right of the deepest stage node (thin -> prune -> cluster: 3)
    for pre, y in nodes.items():
        if pre:
            parent = pre[:-1]
            ax.annotate("", (len(pre) - 0.32, y), (len(parent) + 0.32, nodes[parent]),
                        arrowprops=dict(arrowstyle="->", color="#666"))
        ax.text(len(pre), y, names.get(pre, "+".join(pre)), ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round", fc="#dde8f5", ec="#557"))
    for p in paths:
        leaf, steps = by_path[p], tree_paths.PATHS[p]
        parent = steps[:-1] if steps and steps[-1] == "qat" else steps
        method = tree_paths.qat_scheme(parent).upper() if steps and steps[-1] == "qat" else "PTQ"
        npu = next(iter(leaf.get("npu", {}).items()), None)
        name, value = metrics.of_leaf(leaf)
        text = (f"{method}: INT8 {metrics.fmt(name, value)}  gzip {leaf['gzip_bytes']:,} B "
                f"({leaf['saving_pct']:.1f}% saved)  sparsity {leaf['sparsity']:.0%}  "
                f"uniq/ch {leaf['max_unique_per_channel']}"
                + (f"  {npu[0]}: {npu[1]['npu_cycles']:,} cycles" if npu else ""))
        ax.annotate("", (x_leaf - 0.05, y_leaf[p]), (len(parent) + 0.32, nodes[parent]),
                    arrowprops=dict(arrowstyle="->", color="#666"))
        ax.text(x_leaf, y_leaf[p], text, ha="left", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round", fc="#e8f6e8" if leaf["blessed"] else "#fbeaea",
                          ec="#585" if leaf["blessed"] else "#a55"))
    ax.set_xlim(-0.5, x_leaf + 4.4)
    ax.set_ylim(min(y_leaf.values()) - 0.7, 0.7)
    return fig


def pareto(points):
    """Indices of the points (x to minimise, y to maximise) no other point beats on both."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2, y2) != (x, y) for x2, y2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_figure(leaves):
    targets = targets_of(leaves)
    axes_spec = [("gzip bytes", lambda l: l["gzip_bytes"])]
    if targets:
        t = targets[0]
        axes_spec.append((f"{t} inference time (ms)",
                          lambda l, t=t: l["npu"][t]["inference_time_s"] * 1e3 if t in l["npu"] else None))
    fig, axs = plt.subplots(1, len(axes_spec), figsize=(6 * len(axes_spec), 4.2), squeeze=False)
    for ax, (xlabel, fx) in zip(axs[0], axes_spec):
        name, _, what = metric_of(leaves)
        scale, sign = (100 if metrics.get(name).fraction else 1), (1 if metrics.get(name).higher_is_better else -1)
        pts = [(fx(l), scale * metrics.of_leaf(l)[1], l) for l in leaves if fx(l) is not None]
        front = pareto([(x, sign * y) for x, y, _ in pts])
        for x, y, l in pts:
            ax.scatter(x, y, c="#2a7" if l["blessed"] else "#c44", s=36, zorder=3)
            ax.annotate(l["path"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if front:
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", c="#555", zorder=2,
                    label="Pareto front")
            ax.legend(fontsize=8)
        ax.margins(0.15)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"INT8 {what}" + (" (%)" if scale == 100 else ""))
        ax.grid(alpha=0.3)
    return fig


def density_figure(layer, history, path):
    """The seed's figure: the weight distribution of one kernel after every stage of a path."""
    stages = list(history)
    fig, axs = plt.subplots(1, len(stages), figsize=(3.4 * len(stages), 2.8), squeeze=False)
    floats = [np.asarray(w) for s, w in history.items() if s != INT8_STAGE]
    lo, hi = (min(float(w.min()) for w in floats), max(float(w.max()) for w in floats)) if floats else (-1, 1)
    for ax, stage in zip(axs[0], stages):
        w = np.asarray(history[stage]).ravel()
        int8 = stage == INT8_STAGE  # stored codes: their own axis (per-channel scales differ)
        ax.hist(w, bins=255 if int8 else 120, range=(-128, 127) if int8 else (lo, hi), density=True,
                color="#a53" if int8 else "#37a", log=True)
        ax.set_title(f"{'INT8 codes in the .tflite' if int8 else stage}\nsparsity {np.mean(w == 0):.0%}, "
                     f"{len(np.unique(w))} distinct values", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"kernel of layer {layer!r} along {tree_paths.label(path)}", fontsize=10)
    fig.tight_layout()
    return fig


def render(leaves, kernels=None, title="collabopt optimization report", meta=None):
    """HTML text. leaves: leaf dicts; kernels: {path: (layer, {stage: kernel})}; meta: {label: value}."""
    leaves = sorted(leaves, key=lambda l: list(tree_paths.PATHS).index(l["path"]) if l["path"] in tree_paths.PATHS else 99)
    failed = [l for l in leaves if l.get(FAILED)]
    leaves = [l for l in leaves if not l.get(FAILED)]
    meta = {"generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            **(meta or {})}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             "<p>" + " &middot; ".join(f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}"
                                      for k, v in meta.items()) + "</p>",
             "<h2 id='leaves'>Leaves</h2>", table(leaves),
             "<p>saving = INT8 .tflite bytes vs its gzip bytes; clusters = what the path promised; uniq = "
             "distinct int8 values in a Conv2D/Dense kernel, per output channel and per tensor; TFLM arena = the "
             "tensor arena TensorFlow Lite Micro allocates on the CPU path (+ 16 B); TFLM vs LiteRT = the largest "
             "output difference and the top-1 answers that differ on the first (n) eval examples; drop is against "
             f"the baseline's INT8 (PTQ) {metric_of(leaves)[2]} (&gt; 0: worse).</p>",
             failed_paths(failed), left_out(leaves)]
    if leaves:
        parts += ["<h2 id='tree'>Deployment tree</h2>", _png(tree_figure(leaves)),
                  "<h2 id='pareto'>Pareto front</h2>", _png(pareto_figure(leaves))]
        parts.append(npu_layers.section(leaves))
    kernels = {p: k for p, k in (kernels or {}).items() if k and k[1]}
    if kernels:
        # The deepest path shows every stage; the others are in its prefix.
        path = max(kernels, key=lambda p: (len(kernels[p][1]), list(tree_paths.PATHS).index(p)))
        layer, history = kernels[path]
        parts += ["<h2 id='density'>Weight density through the stages</h2>",
                  f"<p>Kernel of layer <b>{html.escape(layer)}</b> after each stage of "
                  f"<b>{html.escape(tree_paths.label(path))}</b>: {html.escape(', '.join(history))}"
                  + (" (the int8 codes stored in the .tflite)" if INT8_STAGE in history else "") + ".</p>",
                  _png(density_figure(layer, history, path))]
    parts.append("</body></html>")
    return "\n".join(parts)
