"""The layer-coverage zoo (issue 20; tests/zoo_models.py, the models tests/test_zoo.py checks): each
model through `paths: all` with `collabopt run` on tiny data (64 train / 32 eval examples, baseline 1
epoch, prune 50% / cluster 8 / QAT 1 epoch each, Vela ethos-u55-128). Per model, from MLMD and each
leaf's leaf.json: leaves produced, layers left out, the PCQAT leaf's INT8 drop vs `ptq`, gzip saving,
Vela-encoded weights and NPU time (`ptq` -> PCQAT). The accuracies are those of barely trained models
on 32 examples: what is measured is coverage, size and time, not accuracy.

    .venv/bin/python benchmarks/zoo.py                       # every model (hand-built ones 4-7 min each on 2 shared cores)
    .venv/bin/python benchmarks/zoo.py --models conv1d,gru   # some of them
    .venv/bin/python benchmarks/zoo.py --models efficientnet_b0 --timeout-s 14400   # a keras.applications one on shared cores
"""
import argparse
import os
import shutil

from collabopt.benchmarks import common  # noqa: E402  (sets TF_USE_LEGACY_KERAS)

PCQAT = "prune_cluster_pcqat"


def parse_args(argv=None):
    from collabopt.tests import zoo_models
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(zoo_models.MODELS), help="comma-separated, of " + ",".join(zoo_models.MODELS))
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/zoo)")
    ap.add_argument("--table", nargs="+", metavar="ZOO_JSON", help="print the table of earlier runs' zoo.json only")
    ap.add_argument("--timeout-s", type=int, default=zoo_models.TREE_TIMEOUT_S,
                    help="one model's `collabopt run` limit (raise it on cores shared with other work)")
    a = ap.parse_args(argv)
    zoo_models.TREE_TIMEOUT_S = a.timeout_s
    a.arch = a.models  # common.run_each's loop
    return a


def left_out(leaves):
    """{technique: {layer: why}} over every leaf (a layer a technique leaves out, it leaves out in each)."""
    out = {}
    for leaf in leaves.values():
        for technique, layers in leaf["excluded_layers"].items():
            out.setdefault(technique, {}).update(layers)
    return out


def run_model(name, out):
    from collabopt.core import artifact_files, tree_paths
    from collabopt.tests import zoo_models
    work = os.path.join(out, name)
    if os.path.isdir(work):
        shutil.rmtree(work)  # our own previous results: never report a stale run
    try:
        code, _, root = zoo_models.run(name, work)
    except AssertionError as e:  # its `collabopt run` did not finish in time: a row that says so
        return {"model": name, "error": str(e), "expected": tree_paths.expand("all"), "full_int8_leaves": [],
                "failed": {}, "left_out": {}, "leaves": {}}
    leaves = zoo_models.leaves(root)
    vela = {p: artifact_files.read_leaf(l["uri"])["npu"][zoo_models.TARGET] for p, l in leaves.items()
            if not l["failed"]}
    ok = [p for p, l in leaves.items() if not l["failed"] and l.get("kernels_int8") and l.get("io_int8")
          and (l["npu"][zoo_models.TARGET]["cycles"] or 0) > 0]
    return {"model": name, "exit_code": code, "root": root, "expected": tree_paths.expand("all"), "full_int8_leaves": ok,
            "failed": {p: l["error"] for p, l in leaves.items() if l["failed"]}, "left_out": left_out(leaves),
            "leaves": {p: {k: l.get(k) for k in ("metric_drop", "int8_accuracy", "saving_pct", "gzip_bytes", "tflite_bytes",
                                                 "sparsity", "max_unique_per_channel", "reasons")}
                       | {"encoded_weights_bytes": vela.get(p, {}).get("encoded_weights_bytes"),
                          "npu_cycles": l["npu"][zoo_models.TARGET]["cycles"],
                          "inference_time_s": l["npu"][zoo_models.TARGET]["inference_time_s"]}
                       for p, l in leaves.items()}}


PASSED = "passed through"  # a weightless TF op (layer_support): nothing for a technique to do


def left_out_text(by_technique):
    """Per technique, the layers it left out (named when few), then the weightless TF ops it passed
    through; '-' when none."""
    parts, ops = [], set()
    for technique, layers in by_technique.items():
        ops |= {layer for layer, why in layers.items() if PASSED in why}
        real = sorted(layer for layer, why in layers.items() if PASSED not in why)
        if real:
            parts.append(f"{technique}: " + (", ".join(real) if len(real) <= 3 else f"{len(real)} layers"))
    if ops:
        parts.append(f"{len(ops)} TF ops passed through")
    return "; ".join(parts) or "-"


def table(done):
    head = ["model", "leaves (full INT8 / 8)", "layers left out", "PCQAT INT8 drop pp", "PCQAT gzip saving",
            "Vela encoded weights B (ptq -> PCQAT)", "NPU time us (ptq -> PCQAT)", "run time"]
    rows = []
    for r in done:
        ptq, pc = r["leaves"].get("ptq", {}), r["leaves"].get(PCQAT, {})
        us = [None if l.get("inference_time_s") is None else round(l["inference_time_s"] * 1e6) for l in (ptq, pc)]
        rows.append([r["model"], f"{len(r['full_int8_leaves'])} / {len(r['expected'])}", left_out_text(r["left_out"]),
                     "-" if pc.get("metric_drop") is None else f"{100 * pc['metric_drop']:+.1f}",
                     "-" if pc.get("saving_pct") is None else f"{pc['saving_pct']:.1f}%",
                     f"{common.num(ptq.get('encoded_weights_bytes'))} -> {common.num(pc.get('encoded_weights_bytes'))}",
                     f"{common.num(us[0])} -> {common.num(us[1])}", f"{r['seconds'] / 60:.1f} min"])
    return common.md_table(head, rows)


def main(argv=None):
    a = parse_args(argv)
    if a.table:
        import json
        done = []
        for path in a.table:
            with open(path) as f:
                done += json.load(f)["results"]
        print(table(done))
        return done
    done, meta = common.run_each("zoo", a, run_model)
    print()
    print(table(done))
    print()
    for r in done:
        if r.get("error"):
            print(f"- {r['model']}: {r['error']}")
        for p, why in r["failed"].items():
            print(f"- {r['model']} {p} FAILED: {why}")
        for technique, layers in r["left_out"].items():
            for layer, why in layers.items():
                print(f"- {r['model']} {technique} left out {layer}: {why}")
    print(f"\n{meta['command']}  ({meta['date']}, {sum(r['seconds'] for r in done) / 60:.1f} min)")
    return done


if __name__ == "__main__":
    main()
