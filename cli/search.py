"""`collabopt search CONFIG`: the smallest, fastest leaf that meets the config's `search` requirements.

Exit code 0 with the chosen leaf; NOT_MET (4) when no leaf meets every requirement, after printing
the best leaf per objective and, per requirement, by how much the best leaf misses it."""
import os

from collabopt.core.evaluation import gates, metrics
from collabopt.search import stop
from collabopt.search.record import KEEP_RATIO

NOT_MET = 4
UNITS = {"encoded_weights_bytes": "B", "npu_cycles": "cycles", "inference_time_s": "s",
         "flash_bytes": "B", "sram_bytes": "B"}


def add_parsers(sub):
    r = sub.add_parser("search", help="search the deployment tree for the smallest, fastest leaf that meets "
                                      "the config's search.requirements (exit code 4: none does)")
    r.add_argument("config", help="a YAML config with a search section")
    r.add_argument("--runner", choices=("local", "beam"), default="local")
    r.add_argument("--root", default=None, help="folder for artifacts, the SQLite MLMD, search.json "
                                               "(default: runs/<name>-search); the same root resumes a search")
    r.set_defaults(func=run)


def _leaf(leaf, name):
    kept = leaf.get(KEEP_RATIO)
    return ((f"channels kept {kept:.0%}, " if kept is not None else "")
            + f"drop {metrics.fmt_drop(name, leaf['drop'], '+')}, encoded weights {leaf['encoded_weights_bytes']:,} B, "
            f"{leaf['npu_cycles']:,} cycles ({leaf['inference_time_s'] * 1e3:.3f} ms), SRAM {leaf['sram_bytes']:,} B, "
            f"TFLM arena {_arena(leaf)}")


def _arena(leaf):
    arena = leaf.get(gates.ARENA_BYTES)
    return "not measured" if arena is None else f"{arena:,} B"


def _value(name, key, v):
    return metrics.fmt_drop(name, v) if key == "drop" else f"{v:,} {UNITS[key]}"


def summary(record):
    """The search's outcome as printed lines."""
    name = record.eval_metric
    lines = [f"space: {record.considered} candidates, {record.feasible_by_estimate} within the resource "
             f"requirements by one-shot estimate; strategy: {record.strategy}"
             + (f", then {record.then}" if record.then else "")]
    lines += [f"left out: {cid}: {why}" for cid, why in record.failed.items()]
    for r in record.rounds:
        kind = "screening round" if r.screen else "round"
        lines.append(f"{kind} at {r.epochs} epoch(s), {r.cost_epochs} fine-tuning epochs:")
        lines += [f"  {cid:36s} {_leaf(leaf, name)}" for cid, leaf in r.leaves.items()]
    lines.append(f"fine-tuning epochs: {record.epochs_spent} planned, {record.epochs_executed} executed "
                 f"(the rest CACHED); stopped: {record.stopped}")
    if record.chosen:
        at = f" ({record.leaf['epochs']} epoch(s))" if "epochs" in record.leaf else ""
        lines.append(f"chosen: {record.chosen}{at}: {_leaf(record.leaf, name)}")
        return lines
    best = record.best_so_far or {"best": {}, "misses": {}}
    lines.append("no leaf meets every requirement; best so far:")
    lines += [f"  {k}: {cid} ({_value(name, k, v)})" for k, (cid, v) in best["best"].items()]
    lines += [f"  no leaf meets {line}" for line in stop.named_misses(record)]
    return lines


def run(args):
    from collabopt.pipelines import config as tree_config
    from collabopt.search import driver

    cfg = tree_config.load(args.config)
    root = args.root or os.path.join("runs", cfg["name"] + "-search")
    record = driver.run(cfg, root, args.runner)
    print("\n".join(summary(record)), flush=True)
    print(f"record: {os.path.join(root, driver.RECORD_FILE)}\nreport: {os.path.join(root, driver.REPORT_FILE)}")
    if not record.chosen:
        raise SystemExit(NOT_MET)
