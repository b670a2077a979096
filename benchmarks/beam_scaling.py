"""Beam evaluation scaling: INT8 accuracy of one leaf over the whole Fashion-MNIST test set (10k
images, written in several shards) with `core.evaluation.beam_eval.accuracy` on the DirectRunner, in-memory
(1 worker, in this process) vs multi-processing with 1 and with 2 worker processes; the headline
is the ratio of 2 multi-processing workers to 1, paired per round.

The leaf is the full-INT8 PTQ .tflite of a DS-CNN trained here (or --tflite). Runs alternate (order
rotated per round) in this one process; medians and the ratio per round are reported. To explain the
ratio, the same is measured at two data sizes (the test set, and the test set repeated --big-copies
times as extra shards): time = fixed + per_image * n gives each mode's fixed cost (pipeline start,
worker processes importing TensorFlow, loading the interpreter) and its throughput. The floor is
the same interpreter over the same arrays without Beam (analyze.int8_accuracy).

    .venv/bin/python benchmarks/beam_scaling.py                    # defaults: ~6 min on 2 cores
    .venv/bin/python benchmarks/beam_scaling.py --rounds 1 --big-copies 0 --eval-limit 1000  # smoke test
"""
import argparse
import os
import shutil
import statistics
import sys

from collabopt.benchmarks import common  # noqa: E402

MODES = {
    "in_memory": ["--direct_running_mode=in_memory"],
    "multi_processing x1": ["--direct_running_mode=multi_processing", "--direct_num_workers=1"],
    "multi_processing x2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--eval-limit", type=int, default=0, help="test images (0: all 10k)")
    ap.add_argument("--shards", type=int, default=4, help="TFRecord shards of the eval split")
    ap.add_argument("--big-copies", type=int, default=10,
                    help="also measure on the eval split repeated this many times (0: skip)")
    ap.add_argument("--keras", action="store_true",
                    help="also run the Keras SavedModel in the same pass (what LeafEvaluator does)")
    ap.add_argument("--tflite", default=None, help="an INT8 .tflite to evaluate (28x28x1 input unless --size)")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/beam_scaling)")
    return ap.parse_args(argv)


def prepare(a, out):
    """Examples (train: 5k for the baseline and calibration; eval: the test set in shards), the leaf,
    and a bigger eval split of repeated shards."""
    import numpy as np

    from collabopt.core import artifact_files, stages
    from collabopt.core.data import examples_io
    from collabopt.core.model import baseline
    work = os.path.join(out, "data")
    if os.path.isdir(work):
        shutil.rmtree(work)
    examples = common.write_fashion_mnist(os.path.join(work, "examples"), train_limit=5000, eval_limit=a.eval_limit,
                                          size=a.size, num_shards=a.shards)
    big = None
    if a.big_copies:
        d = examples_io.load_fashion_mnist(train_limit=1, eval_limit=a.eval_limit or None)
        x, y = d["eval"]
        big = os.path.join(work, "examples_big")
        examples_io.write_examples(big, {"eval": (np.concatenate([common.pad_to(x, a.size)] * a.big_copies),
                                           np.concatenate([y] * a.big_copies))}, num_shards=a.shards * a.big_copies)
    spec = stages.DataSpec(examples, feature_shape=(a.size, a.size, 1))
    tflite, baseline = a.tflite, None
    if not tflite:
        baseline = common.train_baseline(baseline.ds_cnn((a.size, a.size, 1)), examples, os.path.join(work, "baseline"),
                                         feature_shape=(a.size, a.size, 1), epochs=1, final_lr_epochs=0)
        stages.to_tflite(os.path.join(work, "baseline"), spec, os.path.join(work, "leaf"), evaluate=False)
        tflite = os.path.join(work, "leaf", artifact_files.TFLITE_FILE)
    return examples, big, tflite, baseline, spec


def timed_eval(tflite, examples, mode_args, a, saved_model):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from collabopt.core.evaluation import beam_eval
    with common.Timer() as t:
        r = beam_eval.accuracy(tflite, examples, "eval", saved_model_dir=saved_model, feature_shape=(a.size, a.size, 1),
                              make_pipeline=lambda: beam.Pipeline(options=PipelineOptions(mode_args)))
    return t.s, r


def main(argv=None):
    a = parse_args(argv)
    out = common.results_dir("beam_scaling", a.out)
    meta = common.provenance(a)
    from collabopt.core.tflite import flatbuffer
    from collabopt.core.data import examples_io
    from collabopt.core.model import keras_io
    examples, big, tflite, baseline, spec = prepare(a, out)
    saved_model = keras_io.saved_model_dir(os.path.join(out, "data", "baseline")) if a.keras and baseline else None
    modes = a.modes.split(",")
    sets = {"test": examples, **({f"test x{a.big_copies}": big} if big else {})}

    # The floor: one process, no Beam, arrays already in memory.
    x, y = examples_io.read_examples(spec.examples_uri, spec.eval_split, feature_shape=spec.feature_shape)
    with open(tflite, "rb") as f:
        model = f.read()
    with common.Timer() as t:
        floor_acc = flatbuffer.int8_accuracy(model, x, y)
    floor = {"seconds": t.s, "int8_accuracy": floor_acc, "examples": int(len(y))}
    print(f"no Beam, arrays in memory: {t.s:.1f} s for {len(y):,} images ({floor_acc:.4f})", flush=True)

    runs = []
    for i in range(a.rounds):
        order = modes[i % len(modes):] + modes[:i % len(modes)]
        for name, uri in sets.items():
            for m in order:
                s, r = timed_eval(tflite, uri, MODES[m], a, saved_model)
                runs.append({"round": i, "set": name, "mode": m, "seconds": s, **r})
                print(f"round {i} {name:>8} {m:<20} {s:6.1f} s  {r['examples']:,} images  "
                      f"int8 {r['int8_accuracy']:.4f}", flush=True)
                common.write_json(os.path.join(out, "beam_scaling.json"), {**meta, "floor": floor, "runs": runs})

    summary = summarize(runs, sets, modes, a.rounds)
    agree = len({round(r["int8_accuracy"], 10) for r in runs if r["set"] == "test"}) == 1 and \
        abs(runs[0]["int8_accuracy"] - floor_acc) < 1e-12
    common.write_json(os.path.join(out, "beam_scaling.json"), {**meta, "floor": floor, "runs": runs, "summary": summary,
                                                              "accuracies_agree": agree})
    plot(runs, summary, sets, modes, os.path.join(out, "beam_scaling.png"))
    print(f"\nINT8 evaluation{' + Keras' if saved_model else ''} of a DS-CNN PTQ leaf, {a.shards} shards per 10k, "
          f"DirectRunner, {a.rounds} rounds (median seconds; ratio = mode / in_memory, median of per-round ratios)\n")
    head = ["mode", *[f"{n}: {summary['sets'][n]['examples']:,} images" for n in sets], *[f"ratio ({n})" for n in sets]]
    if len(sets) == 2:
        head += ["fixed cost (s)", "images/s after start-up"]
    rows = []
    for m in modes:
        row = [m, *[f"{summary['sets'][n]['median_s'][m]:.1f}" for n in sets],
               *[f"{summary['sets'][n]['ratio_to_in_memory'][m]:.2f}x" for n in sets]]
        if len(sets) == 2:
            fit = summary["fit"][m]
            row += [f"{fit['fixed_s']:.1f}", f"{fit['images_per_s']:,.0f}"]
        rows.append(row)
    print(common.md_table(head, rows))
    print(f"\nno Beam (arrays in memory, one interpreter): {floor['seconds']:.1f} s for {floor['examples']:,} images; "
          f"every run's INT8 accuracy {'equals' if agree else 'DIFFERS from'} it ({floor_acc:.4f})")
    for n in sets:
        two = summary["sets"][n].get("x2_to_x1")
        if two:
            print(f"{n} ({summary['sets'][n]['examples']:,} images), multi_processing 2 workers vs 1: {two:.2f}x "
                  f"the time (speed-up {1 / two:.2f}x, median of per-round ratios)")
    fit = summary.get("fit", {})
    if "in_memory" in fit and "multi_processing x2" in fit:
        a1, a2 = fit["in_memory"], fit["multi_processing x2"]
        gain = 1 / a1["images_per_s"] - 1 / a2["images_per_s"]
        summary["break_even_images"] = (a2["fixed_s"] - a1["fixed_s"]) / gain if gain > 0 else None
        print("2 workers break even with in_memory at " + (f"~{summary['break_even_images']:,.0f} images"
              if summary["break_even_images"] else "no size (no throughput gain)") + " (from the fitted lines)")
        common.write_json(os.path.join(out, "beam_scaling.json"), {**meta, "floor": floor, "runs": runs,
                                                                  "summary": summary, "accuracies_agree": agree})
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']})")
    print(f"results: {out}/beam_scaling.json, beam_scaling.png")


def summarize(runs, sets, modes, rounds):
    out = {"sets": {}}
    for name in sets:
        rs = [r for r in runs if r["set"] == name]
        med = {m: statistics.median([r["seconds"] for r in rs if r["mode"] == m]) for m in modes}
        ratio = {}
        for m in modes:
            per = []
            for i in range(rounds):
                base = [r["seconds"] for r in rs if r["round"] == i and r["mode"] == "in_memory"]
                got = [r["seconds"] for r in rs if r["round"] == i and r["mode"] == m]
                if base and got:
                    per.append(got[0] / base[0])
            ratio[m] = statistics.median(per) if per else None
        out["sets"][name] = {"examples": rs[0]["examples"], "median_s": med, "ratio_to_in_memory": ratio}
        # the ratio: 2 multi-processing workers vs 1, paired within each round
        pairs = [[r["seconds"] for r in rs if r["round"] == i and r["mode"] == m]
                 for i in range(rounds) for m in ("multi_processing x1", "multi_processing x2")]
        per = [two[0] / one[0] for one, two in zip(pairs[::2], pairs[1::2]) if one and two]
        out["sets"][name]["x2_to_x1"] = statistics.median(per) if per else None
    if len(sets) == 2:
        (n1, s1), (n2, s2) = [(out["sets"][n]["examples"], out["sets"][n]["median_s"]) for n in sets]
        out["fit"] = {}
        for m in modes:
            per_image = (s2[m] - s1[m]) / (n2 - n1)
            out["fit"][m] = {"fixed_s": s1[m] - per_image * n1,
                             "images_per_s": 1 / per_image if per_image > 0 else float("inf")}
    return out


def plot(runs, summary, sets, modes, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for j, m in enumerate(modes):
        for name in sets:
            pts = [(r["examples"], r["seconds"]) for r in runs if r["mode"] == m and r["set"] == name]
            ax.scatter(*zip(*pts), color=f"C{j}", label=m if name == "test" else None, alpha=0.7)
        if "fit" in summary:
            f = summary["fit"][m]
            xs = [0, max(r["examples"] for r in runs)]
            ax.plot(xs, [f["fixed_s"] + x / f["images_per_s"] for x in xs], color=f"C{j}", lw=0.8)
    ax.set_xlabel("eval images")
    ax.set_ylabel("seconds (evaluate.accuracy)")
    ax.set_title("Beam INT8 evaluation on the DirectRunner")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
