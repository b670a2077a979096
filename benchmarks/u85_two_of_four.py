"""2:4 on Ethos-U85 (issue 23): the same DS-CNN through prune -> sparsity-preserving cluster -> PCQAT
twice, with unstructured 50% pruning (dense for the NPU) and with `prune.m_by_n: [2, 4]`; per leaf
the Vela cycles on each target, the encoded weights, the INT8 accuracy and its drop vs `ptq`, and
the preservation gate (the 2:4 pattern checked per aligned group in the INT8 flatbuffer).

Vela 5.2 halves the MAC cycles of a 2:4 Conv2D / FullyConnected on Ethos-U85 only, with a 128-deep
IFM block where dense uses 32 or 64: a layer with fewer than 128 input channels gains nothing, and
a layer bound by memory access (the 128-channel pointwise layers in Vela's default U85 memory mode)
gains nothing either; `--memory-modes` compiles the first target again with feature maps in SRAM.
    .venv/bin/python benchmarks/u85_two_of_four.py [--widths 64,128 --train-limit 2000 --eval-limit 500]
"""
import argparse
import os

from collabopt.benchmarks import common

TARGETS = ("ethos-u85-256", "ethos-u55-128")


def leaf(model_dir, spec, out, targets, memory_modes):
    from collabopt.core import artifact_files, stages
    stats = stages.to_tflite(model_dir, spec, os.path.join(out, "t"), representative_samples=100)
    tflite = os.path.join(out, "t", artifact_files.TFLITE_FILE)
    npu = stages.compile_npu(tflite, os.path.join(out, "npu"), accelerator_configs=targets)
    modes = {m: stages.compile_npu(tflite, os.path.join(out, f"npu_{m}"), accelerator_configs=targets[:1],
                                   memory_mode=m)[targets[0]]["npu_cycles"] for m in memory_modes}
    pw = {t: {r["layer"]: r["cycles"] for r in npu[t]["per_layer"] if r["layer"].startswith("pw_")} for t in targets}
    return {"int8_accuracy": stats["int8_accuracy"], "preservation_failures": stats["preservation_failures"],
            "sparsity": stats["sparsity"], "max_unique_per_channel": stats["max_unique_per_channel"],
            "m_by_n_broken": sum(l["m_by_n_broken"] for l in stats["layers"] if l["op"] != "DEPTHWISE_CONV_2D"),
            **{f"{t}.cycles": npu[t]["npu_cycles"] for t in targets},
            **{f"{t}.encoded_weights_bytes": npu[t]["encoded_weights_bytes"] for t in targets},
            **{f"{targets[0]}.{m}.cycles": c for m, c in modes.items()}, "pw_cycles": pw}


def run_width(width, a, spec, root):
    from collabopt.core import stages
    fit = stages.FitSpec(epochs=a.epochs, batch_size=64, learning_rate=a.lr)
    base = os.path.join(root, f"w{width}", "baseline")
    if not os.path.isdir(base):
        stages.train_baseline(spec, base, width=width, blocks=a.blocks,
                              fit=stages.FitSpec(epochs=a.baseline_epochs, batch_size=64, learning_rate=1e-3))
    out = {"ptq": leaf(base, spec, os.path.join(root, f"w{width}", "ptq"), a.targets, a.memory_modes)}
    for name, prune in (("pcqat", {"target_sparsity": 0.5}), ("pcqat_2of4", {"m_by_n": (2, 4)})):
        d = os.path.join(root, f"w{width}", name)
        stages.prune(base, spec, os.path.join(d, "p"), fit=fit, **prune)
        stages.cluster(os.path.join(d, "p"), spec, os.path.join(d, "c"), number_of_clusters=a.clusters, fit=fit)
        stages.preserving_qat(os.path.join(d, "c"), spec, os.path.join(d, "q"), fit=fit)
        out[name] = leaf(os.path.join(d, "q"), spec, d, a.targets, a.memory_modes)
    for r in out.values():
        r["drop_pp"] = round(100 * (out["ptq"]["int8_accuracy"] - r["int8_accuracy"]), 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="64,128", help="DS-CNN channel widths, comma-separated")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--eval-limit", type=int, default=500)
    ap.add_argument("--baseline-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1, help="prune, cluster and PCQAT epochs each")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clusters", type=int, default=8)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--memory-modes", default="Sram_Only",
                    help="Vela memory modes the first target is also compiled with (comma-separated, '' none)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    a.targets, a.memory_modes = a.targets.split(","), [m for m in a.memory_modes.split(",") if m]
    common.log_progress()
    from collabopt.core import stages
    out = common.results_dir("u85_two_of_four", a.out)
    examples = common.write_fashion_mnist(os.path.join(out, "examples"), train_limit=a.train_limit,
                                          eval_limit=a.eval_limit)
    spec = stages.DataSpec(examples)
    results = {"provenance": common.provenance(a), "widths": {}}
    rows = []
    for width in (int(w) for w in a.widths.split(",")):
        r = results["widths"][width] = run_width(width, a, spec, out)
        for name, x in r.items():
            first = a.targets[0]
            rows.append([f"DS-CNN {width}x{a.blocks}", name, *(common.num(x[f"{t}.cycles"]) for t in a.targets),
                         f"{x[first + '.cycles'] / r['pcqat'][first + '.cycles']:.3f}",
                         *(f"{common.num(x[f'{first}.{m}.cycles'])} "
                           f"({x[f'{first}.{m}.cycles'] / r['pcqat'][f'{first}.{m}.cycles']:.3f})"
                           for m in a.memory_modes),
                         common.num(x[f"{a.targets[0]}.encoded_weights_bytes"]), f"{x['int8_accuracy']:.4f}",
                         x["drop_pp"], x["m_by_n_broken"], "; ".join(x["preservation_failures"]) or "passes"])
    table = common.md_table(["model", "leaf", *(f"{t} cycles" for t in a.targets), f"{a.targets[0]} vs pcqat",
                             *(f"{a.targets[0]} {m} cycles (vs pcqat)" for m in a.memory_modes),
                             f"{a.targets[0]} encoded weights B", "INT8 acc", "drop pp", "2:4 groups broken",
                             "preservation gate"], rows)
    print(table)
    results["table"] = table
    common.write_json(os.path.join(out, "u85_two_of_four.json"), results)


if __name__ == "__main__":
    main()
