"""Channel pruning in the tree (issue 23): the Fashion-MNIST DS-CNN (the demo's model) as three leaves,
`ptq`, `thin_ptq` and `thin_prune_cluster_pcqat`, built by the same core stages the tree's nodes run
(ChannelPruner -> ThinPruner -> ThinSparseClusterer -> ThinPCQAT); per leaf the Vela NPU time and its
ratio to `ptq`, the Vela-encoded weights, the INT8 accuracy and its drop vs the original `ptq` (the
tree's one reference), and the thinned widths read from the leaf's flatbuffer.
    .venv/bin/python benchmarks/thin_tree.py [--train-limit 10000 --eval-limit 2000 --keep-ratio 0.5]
With --arch kws|ic|vww, an MLPerf Tiny reference model instead, on its Fashion-MNIST data and baseline
training (benchmarks/mlperf_tiny.py: sizes, and its prune / cluster settings below the thinned model).
    .venv/bin/python benchmarks/thin_tree.py --arch kws --thin-epochs 4 --thin-lr 1e-3
"""
import argparse
import os

from collabopt.benchmarks import common

TARGET = "ethos-u55-128"


def leaf(model_dir, spec, out, target):
    from collabopt.core import artifact_files, stages
    stats = stages.to_tflite(model_dir, spec, os.path.join(out, "t"), representative_samples=200)
    tflite = os.path.join(out, "t", artifact_files.TFLITE_FILE)
    npu = stages.compile_npu(tflite, os.path.join(out, "npu"), accelerator_configs=(target,))[target]
    kernels = [l for l in stats["layers"] if l["op"] != "DEPTHWISE_CONV_2D"]
    return {"int8_accuracy": stats["int8_accuracy"], "sparsity": stats["sparsity"],
            "max_unique_per_channel": stats["max_unique_per_channel"], "cycles": npu["npu_cycles"],
            "inference_time_s": npu["inference_time_s"], "encoded_weights_bytes": npu["encoded_weights_bytes"],
            "widths": {l["layer"]: l["shape"][0] for l in kernels}, "preservation_failures": stats["preservation_failures"]}


def baseline(a, d):
    """(DataSpec, clusters) of --arch; the baseline trained under d("baseline") unless it is there (kept:
    a rerun with other thin / fine-tuning flags reuses it)."""
    from collabopt.core import stages
    if a.arch == "dscnn":
        spec = stages.DataSpec(common.write_fashion_mnist(d("examples"), train_limit=a.train_limit,
                                                          eval_limit=a.eval_limit))
        if not os.path.isdir(d("baseline")):
            stages.train_baseline(spec, d("baseline"), width=a.width, blocks=a.blocks,
                                  fit=stages.FitSpec(epochs=a.baseline_epochs, batch_size=64, learning_rate=1e-3))
        return spec, 8
    from collabopt.benchmarks import mlperf_tiny
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    shape = ARCHITECTURES[a.arch].input_shape
    train_limit, eval_limit, epochs = mlperf_tiny.SIZES[a.arch]
    if not os.path.isdir(d("baseline")):
        mlperf_tiny.prepare(a.arch, d("examples"), train_limit, eval_limit)
        common.train_baseline(mlperf_tiny.build(a.arch), d("examples"), d("baseline"), feature_shape=shape,
                              epochs=epochs)
    return (stages.DataSpec(d("examples"), feature_key="image", feature_shape=tuple(shape)),
            mlperf_tiny.settings(a.arch, argparse.Namespace())["clusters"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="dscnn", choices=("dscnn", "kws", "ic", "vww"),
                    help="dscnn: the demo's model (--width, --blocks); else an MLPerf Tiny model")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--baseline-epochs", type=int, default=3)
    ap.add_argument("--keep-ratio", type=float, default=0.5)
    ap.add_argument("--min-keep", type=float, default=None,
                    help="narrowest width as a fraction of a channel group's (default: the ChannelPruner's)")
    ap.add_argument("--thin-epochs", type=int, default=2)
    ap.add_argument("--thin-lr", type=float, default=5e-4)
    ap.add_argument("--distill", type=float, default=0.0,
                    help="thin.distill: this fraction of the thin fine-tune's loss from the baseline's outputs")
    ap.add_argument("--epochs", type=int, default=1, help="prune, cluster and PCQAT epochs each")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--prune-lr", type=float, default=1e-4)
    ap.add_argument("--clusters", type=int, default=None, help="default 8 (MLPerf Tiny: its SETTINGS)")
    ap.add_argument("--target", default=TARGET)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    common.log_progress()
    from collabopt.core import stages
    out = common.results_dir("thin_tree" if a.arch == "dscnn" else f"thin_tree_{a.arch}", a.out)
    d = lambda name: os.path.join(out, name)  # noqa: E731
    fit = lambda epochs, lr: stages.FitSpec(epochs=epochs, batch_size=64, learning_rate=lr)  # noqa: E731
    spec, clusters = baseline(a, d)
    clusters = a.clusters or clusters
    floor = {} if a.min_keep is None else {"min_keep": a.min_keep}
    thin = stages.thin(d("baseline"), spec, d("thin"), keep_ratio=a.keep_ratio, npu_target=a.target, **floor,
                       distill=a.distill, fit=fit(a.thin_epochs, a.thin_lr))
    stages.prune(d("thin"), spec, d("thin_prune"), target_sparsity=a.sparsity, fit=fit(a.epochs, a.prune_lr))
    stages.cluster(d("thin_prune"), spec, d("thin_prune_cluster"), number_of_clusters=clusters,
                   fit=fit(a.epochs, 1e-4))
    stages.preserving_qat(d("thin_prune_cluster"), spec, d("thin_pcqat"), fit=fit(a.epochs, 1e-5))
    leaves = {"ptq": leaf(d("baseline"), spec, d("leaf_ptq"), a.target),
              "thin_ptq": leaf(d("thin"), spec, d("leaf_thin_ptq"), a.target),
              "thin_prune_cluster_pcqat": leaf(d("thin_pcqat"), spec, d("leaf_thin_pcqat"), a.target)}
    ptq, rows = leaves["ptq"], []
    for name, x in leaves.items():
        x["drop_pp"] = round(100 * (ptq["int8_accuracy"] - x["int8_accuracy"]), 2)
        x["time_ratio"] = x["inference_time_s"] / ptq["inference_time_s"]
        rows.append([name, common.num(x["cycles"]), f"{x['inference_time_s'] * 1e6:,.0f}", f"{x['time_ratio']:.3f}",
                     common.num(x["encoded_weights_bytes"]),
                     f"{x['encoded_weights_bytes'] / ptq['encoded_weights_bytes']:.3f}",
                     f"{100 * x['int8_accuracy']:.2f}%", f"{x['drop_pp']:+.2f}", f"{x['sparsity']:.1%}",
                     x["max_unique_per_channel"], "/".join(str(w) for w in x["widths"].values())])
    table = common.md_table(["leaf", f"{a.target} cycles", "NPU time us", "time vs ptq", "encoded weights B",
                             "weights vs ptq", "INT8 acc", "drop pp", "sparsity", "uniq/ch", "kernel widths"], rows)
    print(table)
    common.write_json(d("thin_tree.json"), {"provenance": common.provenance(a), "thin": thin, "leaves": leaves,
                                            "table": table})


if __name__ == "__main__":
    main()
