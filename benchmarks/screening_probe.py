"""Issue 13's follow-up question: what, short of fine-tuning every stage node, ranks the candidates
of a search the way the grid's 8 epochs do?

On the roots search_vs_grid.py left (its --out), per prune -> cluster candidate: the drop of its
1-epoch pruned model from the search's first rung (prune only: that node is shared with the
prune_ptq leaf), the drop of that model clustered one-shot (search.sensitivity, no fine-tuning), the
search's 1-epoch leaf (1 + 1 epochs) and the grid's leaf (8 + 8). INT8 accuracy of each on the
search's eval images, drops vs the PTQ baseline.

    .venv/bin/python benchmarks/screening_probe.py --root /path/to/search_vs_grid_out --arch mobilenet
"""
import argparse
import json
import os

from collabopt.benchmarks import common
from collabopt.benchmarks.search_vs_grid import SIZE, SPACE


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="search_vs_grid.py's --out")
    p.add_argument("--arch", default="ds_cnn,mobilenet")
    p.add_argument("--eval-limit", type=int, default=1000)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def stage_outputs(mlmd, key):
    """{node id: uri of its `key` output} over every run on the MLMD."""
    from collabopt.mlmd import results
    store = results.connect(mlmd)
    return {e["node"]: e["outputs"][key][0].uri for r in results.runs(store) for e in results.executions(store, r)
            if e["outputs"].get(key)}


def probe(arch, root, eval_limit):
    from collabopt import runners
    from collabopt.components import keys
    from collabopt.core.model import keras_io
    from collabopt.search import space, sensitivity
    from collabopt.core import stages
    from collabopt.pipelines import config as tree_config, nodes
    from collabopt.search import trials
    cfg = tree_config.merge({})  # the search_vs_grid configs keep the prune section's defaults
    work, size = os.path.join(root, arch), SIZE[arch]
    with open(os.path.join(root, "search_vs_grid.json")) as f:
        bench = next(r for r in json.load(f)["results"] if r["arch"] == arch)
    sample = sensitivity.Sample(stages.DataSpec(os.path.join(work, "examples"), feature_shape=(size, size, 1)),
                                representative=100, eval_limit=eval_limit)
    baseline = keras_io.load_model(os.path.join(work, "baseline"))
    base = sensitivity.measure(baseline, sample, os.path.join(work, "probe", "base"))
    clusterable = sensitivity.layers(baseline, "cluster")
    pruned = stage_outputs(runners.paths(os.path.join(work, "search"))[1], keys.PRUNED_MODEL_KEY)
    first = {l["id"]: l for l in bench["search_leaves"] if l["epochs"] == 1}
    def drop(m):
        return 100 * (base["int8_metric"] - m["int8_metric"])
    rows, seen = [], {}  # seen: per pruning node, (its model, its measure): shared by its candidates
    for c in space.space(["prune_cluster_ptq"], SPACE["sparsities"], SPACE["clusters"], bench["schedules"]):
        if c.path != "prune_cluster_ptq":  # the space always holds the ptq reference
            continue
        prune_key = c.stage_keys()[0]
        node = nodes.stage_id(("prune",), trials.stage_key(cfg, c, ("prune",), 1))
        if node not in pruned or c.id not in bench["grid_leaves"]:
            continue
        if prune_key not in seen:
            model = keras_io.load_model(pruned[node])
            seen[prune_key] = model, sensitivity.measure(model, sample, os.path.join(work, "probe", prune_key))
        model, alone = seen[prune_key]
        clusters = dict(c.layer_clusters) or {n: c.clusters for n in clusterable}
        one_shot = sensitivity.measure(sensitivity.one_shot(model, None, clusters), sample,
                                       os.path.join(work, "probe", c.id))
        rows.append([c.id, f"{drop(alone):+.1f}", f"{drop(one_shot):+.1f}",
                     f"{100 * first[c.id]['drop']:+.1f}" if c.id in first else "-",
                     f"{100 * bench['grid_leaves'][c.id]['drop']:+.1f}"])
    return rows


HEAD = ["candidate", "1-epoch pruning only", "+ one-shot clustering", "search, 1 + 1 epochs", "grid, 8 + 8 epochs"]


def main(argv=None):
    a = parse_args(argv)
    if not os.path.isfile(os.path.join(a.root, "search_vs_grid.json")):
        raise SystemExit(f"screening_probe: --root {a.root}: no search_vs_grid.json there; give search_vs_grid.py's --out")
    common.log_progress()
    out, meta, tables = common.results_dir("screening_probe", a.out), common.provenance(a), {}
    for arch in a.arch.split(","):
        tables[arch] = probe(arch, a.root, a.eval_limit)
        common.write_json(os.path.join(out, "screening_probe.json"), {**meta, "head": HEAD, "tables": tables})
        print(f"\n### {arch}: drop in pp on {a.eval_limit} eval images\n" + common.md_table(HEAD, tables[arch]))
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']}); {out}/screening_probe.json")


if __name__ == "__main__":
    main()
