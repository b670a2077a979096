"""Issue 13's benchmark: `collabopt search` against an exhaustive grid over the same space.

Per architecture (DS-CNN; MobileNet v1 alpha 0.25 on 32x32 zero-padded images), on Fashion-MNIST:
  1. train the baseline here; measure its PTQ leaf's Vela encoded weights, and set a feasible
     requirement set from it (max drop, max encoded weights = a fraction of the PTQ leaf's);
  2. run the search (search/driver.py) on its own root;
  3. run the grid: every candidate of the same space (the search's per-layer schedules included) at
     the search's max epochs, as one round pipeline on another root (no shared cache);
  4. confirm the chosen leaf with a fresh Vela compile and a fresh INT8 evaluation of its .tflite;
  5. print: epochs search / grid, hypervolume coverage of the grid's front (drop vs encoded weights,
     drop vs NPU time), the best coverage any grid leaves trained in 30% of its epochs reach (a
     bound, per front), per-layer vs uniform at equal encoded size; the same again with every leaf
     re-evaluated on the whole test split (--rescore-limit); write search_vs_grid.json.

    .venv/bin/python benchmarks/search_vs_grid.py --arch ds_cnn --train-limit 3000 --eval-limit 1000
"""
import argparse
import os

from collabopt.benchmarks import common
from collabopt.core.artifact_files import TFLITE_FILE

SIZE = {"ds_cnn": 28, "mobilenet": 32}
SPACE = {"paths": ["prune_ptq", "prune_cluster_ptq"], "sparsities": [0.5, 0.75], "clusters": [16, 8]}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ds_cnn,mobilenet")
    p.add_argument("--train-limit", type=int, default=3000)
    p.add_argument("--eval-limit", type=int, default=1000)
    p.add_argument("--baseline-train-limit", type=int, default=20000,
                   help="train images of the baseline (a converged model a user brings); fine-tuning sees --train-limit")
    p.add_argument("--baseline-epochs", type=int, default=8)
    p.add_argument("--max-epochs", type=int, default=2)
    p.add_argument("--eta", type=int, default=2, help="successive halving: keep 1/eta, epochs x eta")
    p.add_argument("--strategy", choices=("halving", "prefix", "auto"), default="halving",
                   help="search.strategy; a strategy other than halving searches on its own root, search_<strategy>")
    p.add_argument("--budget-epochs", type=int, default=None, help="search.budget.max_epochs")
    p.add_argument("--max-drop-pp", type=float, default=1.0)
    p.add_argument("--weights-fraction", type=float, default=0.6, help="max encoded weights / the PTQ leaf's")
    p.add_argument("--rescore-limit", type=int, default=0,
                   help="also re-evaluate every leaf on this many test images (0: the whole test split, -1: "
                        "not at all) and compute the coverage again on those numbers: less eval noise")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def setup(arch, a, work):
    from collabopt.search import sensitivity
    from collabopt.core import stages
    from collabopt.core.model import baseline
    size = SIZE[arch]
    examples = common.write_fashion_mnist(os.path.join(work, "examples"), train_limit=a.train_limit,
                                          eval_limit=a.eval_limit, size=size)
    base = os.path.join(work, "baseline")
    if not os.path.isdir(base):
        base_examples = common.write_fashion_mnist(os.path.join(work, "baseline_examples"),
                                                   train_limit=a.baseline_train_limit, eval_limit=a.eval_limit, size=size)
        model = baseline.ds_cnn((size, size, 1)) if arch == "ds_cnn" else common.mobilenet((size, size, 1))
        common.train_baseline(model, base_examples, base, feature_shape=(size, size, 1), epochs=a.baseline_epochs)
    from collabopt.core.model import keras_io
    spec = stages.DataSpec(examples, feature_shape=(size, size, 1))
    ptq = sensitivity.measure(keras_io.load_model(base), sensitivity.Sample(spec, representative=100, eval_limit=500),
                              os.path.join(work, "ptq_vela"))
    return {"name": f"search-{arch}", "paths": SPACE["paths"],
            "baseline": {"model_uri": base}, "examples": {"uri": examples},
            "data": {"feature_shape": [size, size, 1]}, "convert": {"representative_samples": 100},
            "search": {"sparsities": SPACE["sparsities"], "clusters": SPACE["clusters"], "per_layer": True,
                       "schedule_budgets": [1.0, 3.0], "sensitivity_sample": 500,
                       "requirements": {"max_metric_drop": a.max_drop_pp / 100, "max_encoded_weights_bytes":
                                        int(ptq["encoded_weights_bytes"] * a.weights_fraction)},
                       "epochs": {"min": 1, "max": a.max_epochs, "eta": a.eta}, "strategy": a.strategy,
                       "budget": {"max_epochs": a.budget_epochs}}}


def grid(cfg, schedules, epochs, work):
    from collabopt import runners
    from collabopt.search import driver, space
    cands = space.of_config(cfg, schedules)
    root, mlmd = runners.paths(os.path.join(work, "grid"))
    rnd, nodes, _ = driver._run_round(cfg, cands, epochs, root, mlmd, "local")  # noqa: SLF001
    from collabopt.core.artifact_files import read_leaf
    leaves = {}
    for c in cands:
        ids = rnd.leaves[c.id]
        leaves[c.id] = {**driver.leaf_numbers(read_leaf(nodes[ids.evaluate][1]["evaluation"]), cfg["search"]["npu_target"]),
                        "tflite_uri": nodes[ids.convert][1]["tflite_model"], "path": c.path, "schedule": c.schedule}
    return leaves, space.round_epochs(cands, epochs)


def confirm(cfg, leaf, reference, work):
    """A fresh Vela compile and a fresh INT8 evaluation (whole eval split, LiteRT) of the chosen leaf."""
    from collabopt.core.evaluation import metrics
    from collabopt.search import space
    from collabopt.core import stages
    from collabopt.core.model import train
    from collabopt.core.npu import vela
    spec = stages.DataSpec(cfg["examples"]["uri"], feature_shape=tuple(cfg["data"]["feature_shape"]))
    acc = train.TrainingSpec()  # top-1 accuracy, the benchmark's metric
    out = {}
    for name, lf in (("chosen", leaf), ("ptq", reference)):
        tfl = open(os.path.join(lf["tflite_uri"], TFLITE_FILE), "rb").read()
        npu = vela.compile_for_npu(os.path.join(lf["tflite_uri"], TFLITE_FILE), os.path.join(work, "confirm", name))
        out[name] = {"int8_metric": metrics.of_tflite(acc, tfl, spec.eval_dataset().as_numpy_iterator()), **{k: npu[k] for k in (
            "encoded_weights_bytes", "npu_cycles", "inference_time_s", "flash_bytes", "sram_bytes")}}
    fresh = {**out["chosen"], "drop": space.metric_drop(out["chosen"], out["ptq"], acc.eval_metric)}
    return {"fresh": fresh, "misses": space.misses(fresh, cfg["search"]["requirements"])}


def rescore(leaves, work, size, limit):
    """Each leaf ({id: leaf with tflite_uri}, the ptq leaf among them) with its INT8 accuracy on
    `limit` test images (0: all) and its drop against the ptq leaf's on the same images."""
    from collabopt.core.evaluation import metrics
    from collabopt.core import stages
    from collabopt.core.model import train
    uri = common.write_fashion_mnist(os.path.join(work, f"rescore_examples_{limit}"), train_limit=10,
                                     eval_limit=limit, size=size)
    spec, acc, done = stages.DataSpec(uri, feature_shape=(size, size, 1)), train.TrainingSpec(), {}
    for lf in leaves.values():
        if lf["tflite_uri"] not in done:
            with open(os.path.join(lf["tflite_uri"], TFLITE_FILE), "rb") as f:
                done[lf["tflite_uri"]] = metrics.of_tflite(acc, f.read(), spec.eval_dataset().as_numpy_iterator())
    ref = done[leaves["ptq"]["tflite_uri"]]
    return {cid: {**lf, "int8_metric": done[lf["tflite_uri"]],
                  "drop": metrics.drop(acc.eval_metric, ref, done[lf["tflite_uri"]])} for cid, lf in leaves.items()}


def per_layer_vs_uniform(leaves):
    """Each per-layer leaf against each uniform leaf of its path: +pp of metric and its size ratio; a
    win is >= +0.5 pp at <= the size, or <= 0.9x the size at >= the metric."""
    out = [{"per_layer": pid, "uniform": uid, "gain_pp": 100 * (u["drop"] - p["drop"]),
            "size_ratio": p["encoded_weights_bytes"] / u["encoded_weights_bytes"]}
           for pid, p in leaves.items() if p["schedule"]
           for uid, u in leaves.items() if not u["schedule"] and u["path"] == p["path"]]
    wins = [r for r in out if (r["size_ratio"] <= 1.0 and r["gain_pp"] >= 0.5) or (r["gain_pp"] >= 0 and r["size_ratio"] <= 0.9)]
    return out, wins


def coverage(search_leaves, grid_leaves, requirements):
    """Hypervolume of the search's leaves over the grid's, drop vs encoded weights and drop vs NPU
    time, for two reference points. "required": the front the user asked for: only leaves within
    every resource requirement count, up to (max_metric_drop, that resource's limit, or the ptq
    leaf's value when it has none). "nadir": every leaf of both counts, up to the worst value of any
    of them + 5% (lenient: the search's own poor early leaves widen the box)."""
    from collabopt.core.evaluation import pareto
    from collabopt.search import space
    resources = {r: v for r, v in requirements.items() if r != "max_metric_drop" and v is not None}
    limit = {space.REQUIREMENTS[r]: v for r, v in resources.items()}

    def within(ls):
        return [l for l in ls if not space.misses(l, resources)]
    out = {}
    for key in ("encoded_weights_bytes", "inference_time_s"):
        pts = lambda ls: [(l["drop"], l[key]) for l in ls]  # noqa: E731
        found, full = pts(search_leaves), pts(grid_leaves.values())
        refs = {"required": ((requirements["max_metric_drop"], limit.get(key, grid_leaves["ptq"][key])),
                             pts(within(search_leaves)), pts(within(grid_leaves.values()))),
                "nadir": ((max(p[0] for p in found + full) + 0.005, max(p[1] for p in found + full) * 1.05),
                          found, full)}
        out[key] = {name: pareto.coverage(f, g, ref, (pareto.MIN, pareto.MIN)) for name, (ref, f, g) in refs.items()}
    return out


def oracle(grid_leaves, cands, requirements, epochs, budget):
    """A bound on the "required" coverage, per front: the best of any set of up to 4 grid leaves whose
    grid training (each stage node `epochs`, a shared one once) fits in `budget` epochs, with nothing
    spent on finding them: what a search that knew the answer, and trained as the grid does, reaches."""
    import itertools

    from collabopt.search import space
    ids, by_id = [c.id for c in cands if c.id in grid_leaves and c.id != "ptq"], {c.id: c for c in cands}
    best = {}
    for n in range(1, 5):
        for pick in itertools.combinations(ids, n):
            cost = space.round_epochs([by_id[i] for i in pick], epochs)
            if cost <= budget:
                cov = coverage([grid_leaves[i] for i in pick], grid_leaves, requirements)
                for key, c in cov.items():  # equal coverage: the cheaper
                    best[key] = max(best.get(key, (0.0, 0, [])), (c["required"], -cost, list(pick)))
    return {key: {"coverage": b[0], "leaves": b[2], "epochs": -b[1]} for key, b in best.items()}


def run_arch(arch, a, out):
    from collabopt.pipelines import config as tree_config
    from collabopt.search import driver, space
    work = os.path.join(out, arch)
    cfg = tree_config.merge(setup(arch, a, work))
    with common.Timer() as t:
        record = driver.run(cfg, os.path.join(work, "search" if a.strategy == "halving" else f"search_{a.strategy}"))
    # every rung's leaf is a real, evaluated model (MLMD): all of them are what the search found
    searched = [{**leaf, "id": cid} for r in record.rounds for cid, leaf in r.leaves.items()
                if leaf["drop"] != float("inf")]
    grid_leaves, grid_epochs = grid(cfg, record.schedules, a.max_epochs, work)
    res = {"arch": arch, "strategy": a.strategy, "budget_epochs": a.budget_epochs,
           "requirements": cfg["search"]["requirements"], "chosen": record.chosen,
           "stopped": record.stopped, "search_epochs": record.epochs_spent, "grid_epochs": grid_epochs,
           "search_seconds": round(t.s, 1), "coverage": coverage(searched, grid_leaves, cfg["search"]["requirements"]),
           "schedules": record.schedules, "search_leaves": searched, "grid_leaves": grid_leaves}
    cands, budget = space.of_config(cfg, record.schedules), int(0.3 * grid_epochs)  # issue 13's 30%
    res["oracle"] = oracle(grid_leaves, cands, cfg["search"]["requirements"], a.max_epochs, budget)
    if a.rescore_limit >= 0:  # the same leaves (the search's by rung) on more test images
        leaves = rescore({**grid_leaves, **{f"{l['id']}@{l['epochs']}": l for l in searched}}, work, SIZE[arch],
                         a.rescore_limit)
        res["rescored"] = {"eval_images": a.rescore_limit or "all", "coverage": coverage(
            [leaves[f"{l['id']}@{l['epochs']}"] for l in searched], {k: leaves[k] for k in grid_leaves},
            cfg["search"]["requirements"]), "drops": {k: l["drop"] for k, l in leaves.items()}}
        res["rescored"]["per_layer"], res["rescored"]["per_layer_wins"] = per_layer_vs_uniform(
            {k: leaves[k] for k in grid_leaves})
        res["rescored"]["oracle"] = oracle({k: leaves[k] for k in grid_leaves}, cands,
                                           cfg["search"]["requirements"], a.max_epochs, budget)
    if record.chosen:  # the reference: the grid's ptq leaf (the same PTQ conversion of the same baseline)
        res["confirmed"] = confirm(cfg, record.leaf, grid_leaves["ptq"], work)
    res["per_layer"], res["per_layer_wins"] = per_layer_vs_uniform(grid_leaves)
    return res


def summary(r):
    """One architecture's outcome as printed lines."""
    lines = [f"\n### {r['arch']}, {r.get('strategy', 'halving')} (budget {r.get('budget_epochs')} epochs): "
             f"requirements {r['requirements']}",
             f"chosen {r['chosen']} ({r['stopped']}); confirmed: {r.get('confirmed')}",
             f"fine-tuning epochs: search {r['search_epochs']} / grid {r['grid_epochs']} = "
             f"{r['search_epochs'] / r['grid_epochs']:.0%}; front coverage {r['coverage']}",
             f"bound: grid leaves trained in 30% of the grid's epochs, no screening: {r['oracle']}",
             f"rescored on {r['rescored']['eval_images']} test images: coverage {r['rescored']['coverage']}; "
             f"bound {r['rescored']['oracle']}" if "rescored" in r else "not rescored",
             common.md_table(["leaf", "drop pp", "encoded B", "cycles"], [
                 [cid, f"{100 * l['drop']:+.2f}", f"{l['encoded_weights_bytes']:,}", f"{l['npu_cycles']:,}"]
                 for cid, l in sorted(r["grid_leaves"].items())]),
             "search's leaves: " + ", ".join(f"{l['id']}@{l['epochs']}: {100 * l['drop']:+.2f} pp "
                                             f"{l['encoded_weights_bytes']:,} B" for l in r["search_leaves"])]
    lines += [f"- {w['per_layer']} vs {w['uniform']}: {w['gain_pp']:+.2f} pp at {w['size_ratio']:.2f}x the size"
              for w in r["per_layer"]]
    lines += [f"rescored: {w['per_layer']} vs {w['uniform']}: {w['gain_pp']:+.2f} pp at {w['size_ratio']:.2f}x the size"
              for w in r.get("rescored", {}).get("per_layer", [])]
    return lines + [f"per-layer beats uniform (+0.5 pp at <= size, or <= 0.9x size at >= metric): "
                    f"{bool(r['per_layer_wins'])}; rescored: {bool(r.get('rescored', {}).get('per_layer_wins'))}"]


def main(argv=None):
    a = parse_args(argv)
    common.log_progress()
    out = common.results_dir("search_vs_grid", a.out)
    meta, results = common.provenance(a), []
    for arch in a.arch.split(","):
        results.append(run_arch(arch, a, out))
        common.write_json(os.path.join(out, "search_vs_grid.json"), {**meta, "results": results})
        print("\n".join(summary(results[-1])), flush=True)
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']}); {out}/search_vs_grid.json")
    return results


if __name__ == "__main__":
    main()
