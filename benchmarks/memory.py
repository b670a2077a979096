"""Peak memory of fine-tuning and evaluation vs the size of the split: flat, since every stage
streams the TFRecords (core/data/inputs.py) instead of reading a split into NumPy.

Two Examples folders of real Fashion-MNIST, N and 10 N records (defaults: train 6k vs 60k, eval 1k
vs 10k), and one small DS-CNN SavedModel. For each size a fresh child process runs the stages as a
pipeline would: prune (checks + fine-tuning on the train split + Keras eval) -> to_tflite (calibration
+ INT8 eval) -> evaluate_leaf (Beam, INT8 and the SavedModel, every eval record), and reports its peak
RSS (VmHWM of /proc/self/status) after each stage. Prints the ratio 10N / N (target: <= 1.2).
`--arrays` adds, for reference, a child that does what the stages did before: the train split read
into NumPy (data.read_examples) and fitted from the arrays.

    .venv/bin/python benchmarks/memory.py                              # ~10 min on 2 cores
    .venv/bin/python benchmarks/memory.py --train 600 --eval 100       # smoke test
"""
import argparse
import json
import os
import subprocess
import sys

from collabopt.benchmarks import common  # noqa: E402

STAGES = ("start", "prune", "to_tflite", "evaluate_leaf")


def peak_rss_mb():
    """The process's peak resident set size so far (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1024


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=6000, help="train records of the small split (the big one: x factor)")
    ap.add_argument("--eval", type=int, default=1000, help="eval records of the small split (the big one: x factor)")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--arrays", action="store_true", help="also measure reading the train split into NumPy")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/memory)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "EXAMPLES", "MODEL"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def child(mode, examples, model, work, batch_size):
    """One measured run in this (fresh) process; prints {stage: peak RSS MB} as JSON."""
    from collabopt.core.data import examples_io
    from collabopt.core.model import keras_io, train
    from collabopt.core.evaluation import leaf_evaluation
    from collabopt.core import stages
    peaks = {"start": peak_rss_mb()}
    spec = stages.DataSpec(examples)
    fit = stages.FitSpec(epochs=1, batch_size=batch_size)
    if mode == "arrays":  # the former way: the whole train split as one array, fitted from memory
        x, y = examples_io.read_examples(examples, "train")
        peaks["read_examples"] = peak_rss_mb()
        train.fit(keras_io.load_model(model), x, y, epochs=1, batch_size=batch_size)
        peaks["fit"] = peak_rss_mb()
    else:
        d = lambda name: os.path.join(work, name)  # noqa: E731
        stages.prune(model, spec, d("pruned"), target_sparsity=0.5, fit=fit)
        peaks["prune"] = peak_rss_mb()
        stages.to_tflite(d("pruned"), spec, d("tflite"), representative_samples=100)
        peaks["to_tflite"] = peak_rss_mb()
        leaf_evaluation.evaluate_leaf("prune_ptq", d("tflite"), d("pruned"), spec, d("leaf"))
        peaks["evaluate_leaf"] = peak_rss_mb()
    print(json.dumps(peaks))


def run_child(mode, examples, model, work, a):
    os.makedirs(work, exist_ok=True)
    with common.Timer() as t:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, examples, model,
                              "--out", work, "--batch-size", str(a.batch_size)],
                             check=True, capture_output=True, text=True).stdout
    peaks = json.loads(out.strip().splitlines()[-1])
    print(f"  {mode} {os.path.basename(examples)}: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in peaks.items())
          + f" ({t.s:.0f} s)", flush=True)
    return {"peaks_mb": peaks, "seconds": round(t.s, 1)}


def main(argv=None):
    a = parse_args(argv)
    if a.child:
        return child(*a.child, a.out, a.batch_size)
    out = common.results_dir("memory", a.out)
    meta = common.provenance(a)
    from collabopt.core.model import baseline, keras_io
    sizes = {"N": (a.train, a.eval), f"{a.factor}N": (a.train * a.factor, a.eval * a.factor)}
    folders = {k: common.write_fashion_mnist(os.path.join(out, "data", f"examples_{tr}_{ev}"), train_limit=tr,
                                             eval_limit=ev) for k, (tr, ev) in sizes.items()}
    model = os.path.join(out, "data", "model")
    if not os.path.isdir(model):
        keras_io.save_model(baseline.ds_cnn(width=16, blocks=1), os.path.join(model, keras_io.SERVING_DIR))
    runs = {}
    for mode in ("stages", "arrays") if a.arrays else ("stages",):
        for k, folder in folders.items():
            runs[f"{mode} {k}"] = run_child(mode, folder, model, os.path.join(out, "work", mode, k), a)
    rows, big = [], f"{a.factor}N"
    for mode in ("stages", "arrays") if a.arrays else ("stages",):
        small, large = runs[f"{mode} N"]["peaks_mb"], runs[f"{mode} {big}"]["peaks_mb"]
        for stage in small:
            rows.append([mode, stage, f"{small[stage]:,.0f}", f"{large[stage]:,.0f}", f"{large[stage] / small[stage]:.3f}"])
    head = ["run", "peak RSS after", f"N ({a.train:,} / {a.eval:,}) MB",
            f"{big} ({a.train * a.factor:,} / {a.eval * a.factor:,}) MB", "ratio"]
    print(common.md_table(head, rows))
    ratio = runs[f"stages {big}"]["peaks_mb"]["evaluate_leaf"] / runs["stages N"]["peaks_mb"]["evaluate_leaf"]
    print(f"fine-tuning + evaluation peak RSS, {big} / N: {ratio:.3f} (target <= 1.2: "
          f"{'met' if ratio <= 1.2 else 'NOT met'})")
    common.write_json(os.path.join(out, "memory.json"), {"meta": meta, "runs": runs, "ratio": ratio})


if __name__ == "__main__":
    main()
