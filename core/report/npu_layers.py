"""The report's per-layer NPU view: for each leaf and target, where Vela says the time goes (cycles,
compute- or memory-bound, MACs, MAC and channel-block utilisation) and what it left on the CPU."""
import html

from collabopt.core.npu.per_layer import CPU_OPERATORS, PER_LAYER

COLUMNS = ("layer", "cycles", "% of leaf", "bound", "NPU cycles", "memory cycles", "MACs", "MAC util %",
           "channels", "block util")


def _row(v, total):
    share = 100.0 * v["cycles"] / total if total else 0.0
    cells = [v["layer"], f"{v['cycles']:,}", f"{share:.1f}", v["bound"], f"{v['npu_cycles']:,}",
             f"{v['memory_cycles']:,}", f"{v['macs']:,}", f"{v['mac_util_pct']:.1f}",
             "-" if v["channels"] is None else str(v["channels"]),
             "-" if v["block_util"] is None else f"{v['block_util']:.2f}"]
    return "<tr>" + "".join(f"<td{' class=l' if i in (0, 3) else ''}>{html.escape(c)}</td>"
                            for i, c in enumerate(cells)) + "</tr>"


def leaf_section(leaf):
    """HTML of one leaf's per-layer tables ('' if its NPU numbers have no per-layer view)."""
    parts = []
    for target, est in leaf.get("npu", {}).items():
        rows = est.get(PER_LAYER)
        if not rows:
            continue
        total = sum(v["cycles"] for v in rows)
        parts.append(f"<h3>{html.escape(leaf['path'])} on {html.escape(target)}: {total:,} cycles</h3>"
                     "<table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>"
                     + "".join(_row(v, total) for v in rows) + "</table>")
        cpu = est.get(CPU_OPERATORS) or []
        if cpu:
            parts.append("<p>Left on the CPU: " + "; ".join(
                html.escape(f"{c['op']} ({c['name']}): {c['reason']}") for c in cpu) + "</p>")
    return "\n".join(parts)


def section(leaves):
    """The report's 'Where the NPU time goes' section over every leaf ('' if none has the view)."""
    body = [s for s in (leaf_section(leaf) for leaf in leaves) if s]
    if not body:
        return ""
    return ("<h2 id='npu-layers'>Where the NPU time goes, per layer</h2><p>Vela's estimate per Keras layer: "
            "an operator costs max(NPU cycles, memory cycles); bound says which; block util = channels / the "
            "next multiple of the target's channel block (8 on Ethos-U55/U65, 16 on Ethos-U85).</p>\n"
            + "\n".join(body))
