"""Issue 23, Done-when 4: `collabopt search` on the Fashion-MNIST DS-CNN (64x4, as benchmarks/thin_tree.py
builds it) with a latency requirement only (max_metric_drop 1 pp, max_npu_inference_time_s 0.65x the
`ptq` leaf's on ethos-u55-128) and an epoch budget. No search.paths: the time limit brings the paths
below channel pruning in (search.space.searched_paths), and only thinned candidates can meet it by
estimate. Prints the chosen leaf, its NPU time over `ptq`'s and its drop (also from a fresh Vela
compile and a fresh INT8 evaluation of its .tflite), and the span of NPU time of the search's front
(drop vs NPU time, over every leaf the search built) as min / max over `ptq`'s.

    .venv/bin/python benchmarks/search_latency.py [--time-fraction 0.65 --budget-epochs 16]
"""
import argparse
import os

from collabopt.benchmarks import common

TARGET = "ethos-u55-128"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--eval-limit", type=int, default=2000)
    p.add_argument("--baseline-epochs", type=int, default=3)
    p.add_argument("--paths", default="prune_ptq", help="the tree's paths (the search adds their thin_ variants)")
    p.add_argument("--time-fraction", type=float, default=0.65, help="max NPU time / the ptq leaf's")
    p.add_argument("--max-drop-pp", type=float, default=1.0)
    p.add_argument("--budget-epochs", type=int, default=16, help="search.budget.max_epochs")
    p.add_argument("--min-epochs", type=int, default=2, help="search.epochs.min (first rung)")
    p.add_argument("--max-epochs", type=int, default=4, help="search.epochs.max (last rung)")
    p.add_argument("--thin-lr", type=float, default=1e-3, help="thin.learning_rate (thin_tree.py's recovering one)")
    p.add_argument("--distill", type=float, default=0.0, help="thin.distill: the thin fine-tune's weight on the baseline's outputs")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def setup(a, work):
    """The examples, the baseline (kept: a rerun reuses it) and the requirement from its ptq leaf's NPU
    time (a one-shot Vela compile: the time depends on shapes only). Returns the search config."""
    from collabopt.core import stages
    from collabopt.core.model import keras_io
    from collabopt.search import sensitivity
    examples = common.write_fashion_mnist(os.path.join(work, "examples"), train_limit=a.train_limit,
                                          eval_limit=a.eval_limit)
    spec, base = stages.DataSpec(examples), os.path.join(work, "baseline")
    if not os.path.isdir(base):
        stages.train_baseline(spec, base, width=64, blocks=4,
                              fit=stages.FitSpec(epochs=a.baseline_epochs, batch_size=64, learning_rate=1e-3))
    ptq = sensitivity.measure(keras_io.load_model(base), sensitivity.Sample(spec, eval_limit=100),
                              os.path.join(work, "ptq_vela"), TARGET)
    return {"name": "search-latency", "paths": a.paths.split(","), "baseline": {"model_uri": base},
            "examples": {"uri": examples}, "thin": {"learning_rate": a.thin_lr, "distill": a.distill},
            "search": {"requirements": {"max_metric_drop": a.max_drop_pp / 100,
                                        "max_npu_inference_time_s": a.time_fraction * ptq["inference_time_s"]},
                       "budget": {"max_epochs": a.budget_epochs},
                       "epochs": {"min": a.min_epochs, "max": a.max_epochs}}}


def front_span(leaves, ptq_time):
    """The search's front of (drop, NPU time) over `leaves` ({id: leaf}): its ids and its NPU times'
    min and max over `ptq_time`."""
    from collabopt.search import report
    ids = report.front_ids(leaves, "inference_time_s")
    times = [leaves[i]["inference_time_s"] / ptq_time for i in ids]
    return {"ids": ids, "min": min(times), "max": max(times), "span": max(times) - min(times)}


def main(argv=None):
    a = parse_args(argv)
    common.log_progress()
    from collabopt.benchmarks.search_vs_grid import confirm
    from collabopt.pipelines import config as tree_config
    from collabopt.search import driver, space
    out = common.results_dir("search_latency", a.out)
    cfg = tree_config.merge(setup(a, out))
    with common.Timer() as t:
        record = driver.run(cfg, os.path.join(out, "search"))
    built = {f"{cid}@{leaf['epochs']}": leaf for r in record.rounds for cid, leaf in r.leaves.items()
             if leaf["drop"] != float("inf")}
    ptq = built["ptq@0"] = record.reference
    res = {"provenance": common.provenance(a), "requirements": cfg["search"]["requirements"],
           "considered": record.considered, "feasible_by_estimate": record.feasible_by_estimate,
           "searched_paths": space.searched_paths(cfg), "thin_keep_ratios": record.thin_keep_ratios, "chosen": record.chosen, "stopped": record.stopped,
           "epochs_spent": record.epochs_spent, "search_seconds": round(t.s, 1),
           "front": front_span(built, ptq["inference_time_s"]),
           "leaves": {k: {"drop": l["drop"], "time_ratio": l["inference_time_s"] / ptq["inference_time_s"],
                          "npu_cycles": l["npu_cycles"], "encoded_weights_bytes": l["encoded_weights_bytes"]}
                      for k, l in built.items()}}
    if record.chosen:
        res["chosen_time_ratio"] = record.leaf["inference_time_s"] / ptq["inference_time_s"]
        res["chosen_drop"] = record.leaf["drop"]
        res["confirmed"] = confirm(cfg, record.leaf, ptq, out)
        res["confirmed"]["time_ratio"] = res["confirmed"]["fresh"]["inference_time_s"] / ptq["inference_time_s"]
    common.write_json(os.path.join(out, "search_latency.json"), res)
    rows = [[k, f"{100 * v['drop']:+.2f}", f"{v['time_ratio']:.3f}", common.num(v["npu_cycles"]),
             common.num(v["encoded_weights_bytes"]), "yes" if k in res["front"]["ids"] else ""]
            for k, v in sorted(res["leaves"].items(), key=lambda kv: kv[1]["time_ratio"])]
    print(common.md_table(["leaf@epochs", "drop pp", "NPU time vs ptq", f"{TARGET} cycles", "encoded weights B",
                           "on the front"], rows))
    f = res["front"]
    print(f"chosen {record.chosen} ({record.stopped}): NPU time {res.get('chosen_time_ratio', float('nan')):.3f}x ptq, "
          f"drop {100 * res.get('chosen_drop', float('nan')):+.2f} pp; confirmed {res.get('confirmed')}; "
          f"front NPU time {f['min']:.3f}-{f['max']:.3f}x ptq (span {f['span']:.1%}); "
          f"keep ratios {record.thin_keep_ratios}; {record.considered} candidates, {record.feasible_by_estimate} within the requirements by estimate; "
          f"{record.epochs_spent} fine-tuning epochs; {t.s / 60:.0f} min")
    return res


if __name__ == "__main__":
    main()
