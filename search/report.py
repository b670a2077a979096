"""The search report: one self-contained HTML page from a search record (search.record.Record, as
search/driver.py writes it to search.json): the trajectory, the Pareto fronts (metric drop vs encoded weights and vs NPU time)
with the chosen leaf, the per-layer sensitivity table and the schedules built from it."""
import html

from collabopt.core.evaluation import gates, metrics, pareto
from collabopt.search import stop
from collabopt.search.record import KEEP_RATIO
from collabopt.core.report.html_page import CSS, _png, plt

FRONTS = (("encoded_weights_bytes", "Vela encoded weights (B)", 1), ("inference_time_s", "NPU time (ms)", 1e3))


def front_ids(found, key):
    """Ids on the front of (drop, `key`), both minimized."""
    ids = sorted(found)
    return [ids[i] for i in pareto.front([(found[c]["drop"], found[c][key]) for c in ids], (pareto.MIN,) * 2)]


def _figure(found, chosen, name, key, label, scale):
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    on = set(front_ids(found, key))
    for cid, leaf in found.items():
        ax.scatter(leaf[key] * scale, leaf["drop"], c="tab:blue" if cid in on else "0.7",
                   marker="*" if cid == chosen else "o", s=160 if cid == chosen else 30, zorder=3)
        ax.annotate(cid, (leaf[key] * scale, leaf["drop"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    pts = sorted((found[c][key] * scale, found[c]["drop"]) for c in on)
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", c="tab:blue", lw=1)
    ax.set_xlabel(label)
    ax.set_ylabel(f"INT8 {metrics.title(name)} drop")
    ax.set_title(f"front: {len(on)} of {len(found)} leaves" + (f"; chosen {chosen} (star)" if chosen else ""), fontsize=9)
    return _png(fig)


def _table(head, rows):
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="l">{html.escape(str(v))}</td>' if i == 0 else
                                    f"<td>{html.escape(str(v))}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def render(record, title="collabopt search"):
    found, chosen = record.leaves(), record.chosen
    name = record.eval_metric  # drops in its units (pp for a fraction)

    def drop(d):
        return metrics.fmt_drop(name, d, "+")
    trajectory = [[cid, f"{leaf[KEEP_RATIO]:.0%}" if leaf.get(KEEP_RATIO) is not None else "-", r.epochs,
                   drop(leaf["drop"]), f"{leaf['encoded_weights_bytes']:,}",
                   f"{leaf['npu_cycles']:,}", f"{leaf['inference_time_s'] * 1e3:.3f}",
                   f"{leaf[gates.ARENA_BYTES]:,}" if leaf.get(gates.ARENA_BYTES) is not None else "-",
                   leaf.get("state", "")]
                  for r in record.rounds for cid, leaf in r.leaves.items()]
    outcome = (f"chosen: <b>{html.escape(chosen)}</b>" if chosen else "no leaf meets every requirement; misses: "
               + html.escape("; ".join(stop.named_misses(record))))
    sens = [[r["layer"], r["technique"], r["value"], drop(r["drop"]), f"{r['saved']['encoded_weights_bytes']:,}",
             f"{r['saved']['npu_cycles']:,}"] for r in record.sensitivity if "error" not in r]
    sched = [[s["name"], drop(s["budget"]), ", ".join(f"{k}: {v}" for k, v in s["prune"].items()) or "-",
              ", ".join(f"{k}: {v}" for k, v in s["cluster"].items()) or "-"] for s in record.schedules]
    parts = [f"<h1>{html.escape(title)}</h1><p>{outcome}. Requirements: "
             f"{html.escape(str(record.requirements))} on {html.escape(str(record.npu_target))}; "
             f"{html.escape(record.strategy)} strategy; "
             f"{record.considered} candidates, {record.feasible_by_estimate} within the resource requirements by "
             f"estimate; {record.epochs_spent} fine-tuning epochs; stopped: {html.escape(record.stopped)}.</p>",
             *([f"<p>Left out (could not be measured): {html.escape('; '.join(f'{k}: {v}' for k, v in record.failed.items()))}</p>"]
               if record.failed else []),
             "<h2>Trajectory</h2>", _table(["candidate", "channels kept", "epochs", "drop", "encoded B", "cycles", "NPU ms", "TFLM arena B", "MLMD"],
                                          trajectory)]
    if found:
        parts += ["<h2>Pareto fronts</h2>"] + [_figure(found, chosen, name, *f) for f in FRONTS]
    parts += ["<h2>Per-layer sensitivity (one layer changed, no fine-tuning)</h2>",
              _table(["layer", "technique", "value", "drop", "saved encoded B", "saved cycles"], sens),
              "<h2>Per-layer schedules</h2>", _table(["name", "budget", "sparsity", "clusters"], sched)]
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"
