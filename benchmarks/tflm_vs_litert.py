"""Issue 24: does the device runtime give the answers LiteRT gives? Per leaf, TFLM's interpreter
(tflite-micro, reference kernels) and LiteRT run the same INT8 model on the same first eval examples
(core.firmware.device_check, as the LeafEvaluator does); the table has both metrics, their difference,
the largest output difference in LSBs, the share of examples whose top-1 differs, the TFLM tensor
arena (CPU path) and Vela's SRAM (ethos-u55-128, NPU path).

Models: the demo's baseline (DS-CNN, Fashion-MNIST) with the demo config's leaves (ptq,
prune_cluster_ptq, prune_cluster_pcqat), and each MLPerf Tiny reference architecture
(benchmarks/mlperf_tiny_models.py, data shaped by benchmarks/mlperf_tiny.py) through the same short
PCQAT path: 1-epoch baseline, prune 50% -> sparsity-preserving cluster (8) -> PCQAT, 1 epoch each,
through core.stages (as the pipeline's executors call them).

    .venv/bin/python benchmarks/tflm_vs_litert.py                    # ~10 min on 2 shared cores
    .venv/bin/python benchmarks/tflm_vs_litert.py --models demo,ad --check-examples 64
"""
import argparse
import os
import shutil

from collabopt.benchmarks import common  # noqa: E402  (sets TF_USE_LEGACY_KERAS)

TARGET = "ethos-u55-128"
MODELS = ("demo", "kws", "vww", "ic", "ad")
LEAVES = ("ptq", "prune_cluster_ptq", "prune_cluster_pcqat")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {','.join(MODELS)}")
    ap.add_argument("--train-limit", type=int, default=1000)
    ap.add_argument("--eval-limit", type=int, default=300)
    ap.add_argument("--check-examples", type=int, default=256, help="eval examples TFLM and LiteRT run per leaf")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/tflm_vs_litert)")
    return ap.parse_args(argv)


def prepare(name, work, a):
    """(DataSpec, TrainingSpec, baseline SavedModel dir) of one model, trained for 1 epoch."""
    from collabopt.benchmarks import mlperf_tiny
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    from collabopt.core import stages
    from collabopt.core.model import keras_io, train
    from collabopt.core.tfenv import keras

    base = os.path.join(work, "baseline")
    fit = stages.FitSpec(epochs=1, batch_size=64, learning_rate=1e-3)
    if name == "demo":  # the demo's baseline: collabopt's DS-CNN (defaults: width 64, 4 blocks)
        examples = common.write_fashion_mnist(os.path.join(work, "examples"), train_limit=a.train_limit,
                                              eval_limit=a.eval_limit)
        spec = stages.DataSpec(examples)
        stages.train_baseline(spec, base, fit=fit)
        return spec, train.TrainingSpec(), base
    examples = mlperf_tiny.prepare(name, os.path.join(work, "examples"), a.train_limit, a.eval_limit)
    model = mlperf_tiny.build(name)
    if name == "ad":
        spec = stages.DataSpec(examples, feature_shape=(640,), target="features")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        model.fit(spec.train_dataset(64), epochs=1, verbose=0)
        keras_io.save_model(model, base)
        t = mlperf_tiny.AD_TRAINING
        return spec, train.TrainingSpec(loss=t["loss"], eval_metric=t["eval_metric"]), base
    common.train_baseline(model, examples, base, feature_shape=ARCHITECTURES[name].input_shape, epochs=1,
                          final_lr_epochs=0)
    return stages.DataSpec(examples, feature_shape=tuple(ARCHITECTURES[name].input_shape)), train.TrainingSpec(), base


def leaf_models(base, spec, training, work):
    """{leaf: the Keras model it converts}: ptq the baseline, the clustered model, its PCQAT model."""
    from collabopt.core import stages
    fit = stages.FitSpec(epochs=1, batch_size=64, learning_rate=1e-4)
    p, c, q = (os.path.join(work, s) for s in ("p", "c", "q"))
    stages.prune(base, spec, p, target_sparsity=0.5, fit=fit, training=training)
    stages.cluster(p, spec, c, number_of_clusters=8, fit=fit, training=training)
    stages.preserving_qat(c, spec, q, fit=fit, training=training)
    return {"ptq": base, "prune_cluster_ptq": c, "prune_cluster_pcqat": q}


def measure(model_dir, spec, training, out, check_examples):
    """One leaf: INT8 .tflite, Vela's SRAM, TFLM vs LiteRT on the first `check_examples` eval examples."""
    from collabopt.core import artifact_files, stages
    from collabopt.core.firmware import device_check
    stages.to_tflite(model_dir, spec, os.path.join(out, "t"), representative_samples=100, training=training)
    tflite = os.path.join(out, "t", artifact_files.TFLITE_FILE)
    sram = stages.compile_npu(tflite, os.path.join(out, "npu"))[TARGET]["sram_bytes"]
    with open(tflite, "rb") as f:
        found = device_check.leaf_numbers(f.read(), spec, training, check_examples)
    return {**{k: found[k] for k in device_check.FIELDS}, "sram_bytes": sram, "eval_metric": training.eval_metric}


def run_one(name, a, out):
    work = os.path.join(out, name)
    if os.path.isdir(work):
        shutil.rmtree(work)  # our own previous results: never report a stale run
    spec, training, base = prepare(name, work, a)
    leaves = leaf_models(base, spec, training, work)
    return {"model": name, "leaves": {leaf: measure(d, spec, training, os.path.join(work, leaf), a.check_examples)
                                      for leaf, d in leaves.items()}}


def row(model, leaf, r):
    if r["tflm_error"]:
        return [model, leaf, "-", "-", "-", "-", "-", "-", common.num(r["sram_bytes"]) + f" (TFLM: {r['tflm_error']})"]
    lite, dev = r["tflm_litert_metric"], r["tflm_metric"]
    what = "AUC" if r["eval_metric"] == "auc" else "acc."

    def pp(v):
        return "-" if v is None else f"{100 * v:.2f}%"
    diff = "-" if lite is None or dev is None else f"{100 * (dev - lite):+.2f}"
    return [model, leaf, f"{what} {pp(lite)}", f"{what} {pp(dev)}", diff, r["tflm_max_lsb"],
            f"{100 * r['tflm_top1_differ_rate']:.1f}% ({r['tflm_top1_differ']}/{r['tflm_examples']})",
            common.num(r["tflm_arena_bytes"]), common.num(r["sram_bytes"])]


def table(results):
    head = ["model", "leaf", "LiteRT metric", "TFLM metric", "diff (pp)", "max LSB diff", "top-1 differ",
            "TFLM arena (B)", f"Vela SRAM {TARGET} (B)"]
    return common.md_table(head, [row(r["model"], leaf, v) for r in results for leaf, v in r["leaves"].items()])


def main(argv=None):
    a = parse_args(argv)
    a.arch = a.models  # common.run_each iterates a.arch
    results, meta = common.run_each("tflm_vs_litert", a, lambda name, out: run_one(name, a, out))
    print(f"\n{meta['command']}\n")
    print(table(results))


if __name__ == "__main__":
    main()
