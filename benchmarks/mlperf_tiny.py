"""The four MLPerf Tiny reference architectures (benchmarks/mlperf_tiny_models.py) through every leaf
of the deployment tree, on data made from Fashion-MNIST (issue 11, done-when 1).

Per classifier (KWS DS-CNN, VWW MobileNet v1 0.25, IC ResNet-8):
  1. write an Examples folder shaped as the model's input (`prepare`): KWS 49x10x1 (the image resized,
     the 10 classes on the model's 12-way head), VWW 96x96x3 (resized, grey in 3 channels; 2 classes:
     upper-body garments - T-shirt, pullover, coat, shirt - vs the rest), IC 32x32x3 (zero-padded);
  2. train the reference model (softmax head, so fine-tuning uses cross-entropy on probabilities);
  3. run `paths: all` of pipelines/tree.py on LocalDagRunner (50% sparsity, SETTINGS per model, Vela for
     ethos-u55-128) and read every leaf back from MLMD and its leaf.json;
  4. per leaf: INT8 everywhere, % of operators on the NPU, sparsity and distinct values measured in
     the flatbuffer, gzip, Vela cycles and encoded weights, INT8 accuracy and its drop vs the `ptq`
     leaf (the baseline's INT8); the PCQAT leaf's drop is checked against 1.5 pp.

AD (the autoencoder, 640-d = the central 640 pixels of the flattened image, trained to reconstruct
one "normal" class; anomalies = the other classes) goes through the same tree with `training:
{target: features, loss: mse, eval_metric: auc}`: every leaf fine-tuned on its reconstruction MSE and
evaluated (Beam, FP32 and INT8) by the AUC of its reconstruction error; the INT8 MSE on the normal
class is computed here from each leaf's .tflite (the tree evaluates one metric per run).

    .venv/bin/python benchmarks/mlperf_tiny.py                # default sizes: ~45 min on 2 shared cores
    .venv/bin/python benchmarks/mlperf_tiny.py --quick        # smoke run: tiny data, 1 epoch
    .venv/bin/python benchmarks/mlperf_tiny.py --arch kws,ic  # some of them
"""
import argparse
import os
import shutil

from collabopt.benchmarks import common  # noqa: E402  (sets TF_USE_LEGACY_KERAS)

import numpy as np  # noqa: E402

CLASSIFIERS = ("kws", "vww", "ic")
TOPS = (0, 2, 4, 6)  # VWW's "person" class: T-shirt/top, pullover, coat, shirt
AD_NORMAL = 1  # AD's normal class: trousers
TARGET = "ethos-u55-128"
MAX_PCQAT_DROP_PP = 1.5
# Per architecture: (train images, eval images, baseline epochs); --quick divides them.
SIZES = {"kws": (6000, 2000, 6), "vww": (3000, 1000, 4), "ic": (5000, 2000, 6), "ad": (3000, 2000, 20)}
# Optimization settings; pruning recovers with a larger step (as seed_table.py). Per architecture, what
# it needs to keep PCQAT within 1.5 pp of its PTQ (README "MLPerf Tiny reference models" says why).
DEFAULTS = {"prune_epochs": 2, "prune_lr": 1e-3, "clusters": 8, "cluster_epochs": 1, "cluster_lr": 1e-4,
            "qat_epochs": 1, "qat_lr": 1e-4}
SETTINGS = {"kws": {"cluster_epochs": 2, "qat_epochs": 2},
            "ic": {"clusters": 16, "cluster_epochs": 2, "qat_epochs": 2},
            "vww": {"clusters": 16, "cluster_epochs": 2, "qat_epochs": 2}, "ad": {"qat_epochs": 30}}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="ad,kws,ic,vww", help="comma-separated, of kws,vww,ic,ad")
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 train / 200 eval images, 1 epoch each")
    for flag, kind in (("prune-epochs", int), ("prune-lr", float), ("clusters", int), ("cluster-epochs", int),
                       ("cluster-lr", float), ("qat-epochs", int), ("qat-lr", float)):
        ap.add_argument(f"--{flag}", type=kind, default=None, help="overrides SETTINGS for every --arch")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/mlperf_tiny)")
    return ap.parse_args(argv)


def sizes(arch, quick):
    return (300, 200, 1) if quick else SIZES[arch]


def to_input(arch, images, labels):
    """uint8 Fashion-MNIST [N, 28, 28] + labels -> (uint8 [N, *the model's input], labels)."""
    from collabopt.core.tfenv import tf
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    shape = ARCHITECTURES[arch].input_shape
    if arch == "ad":
        flat = images.reshape(len(images), -1)
        lo = (flat.shape[1] - shape[0]) // 2
        return flat[:, lo:lo + shape[0]], labels
    if arch == "ic":
        x = common.pad_to(images, shape[0])[..., None]
    else:
        x = tf.image.resize(images[..., None].astype("float32"), shape[:2]).numpy()
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    x = np.repeat(x, shape[2], axis=-1)
    return x, (np.isin(labels, TOPS).astype(np.int64) if arch == "vww" else labels)


def prepare(arch, uri, train_limit, eval_limit):
    """An Examples folder (Split-train, Split-eval) of Fashion-MNIST shaped for `arch`; returns uri.
    AD's train split holds the normal class only (label 0); its eval split every class, labelled
    1 = anomaly (not the normal class), as core.metrics' AUC reads it."""
    from collabopt.core.data import examples_io
    d = examples_io.load_fashion_mnist(train_limit=train_limit * (10 if arch == "ad" else 1), eval_limit=eval_limit)
    if arch == "ad":
        x, y = d["train"]
        keep = y == AD_NORMAL
        d["train"] = (x[keep][:train_limit], np.zeros(min(keep.sum(), train_limit), np.int64))
        x, y = d["eval"]
        d["eval"] = (x, (y != AD_NORMAL).astype(np.int64))
    examples_io.write_examples(uri, {k: to_input(arch, *v) for k, v in d.items()}, num_shards=2)
    return uri


def build(arch):
    """The reference model; BatchNormalization momentum 0.9 (0.99 needs more steps than these short
    runs take before its moving statistics forget their initial values)."""
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    from collabopt.core.tfenv import keras
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[arch].fn()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def settings(arch, a):
    """DEFAULTS, then SETTINGS[arch], then any command-line override."""
    given = {k: getattr(a, k) for k in DEFAULTS if getattr(a, k, None) is not None}
    return {**DEFAULTS, **SETTINGS[arch], **given}


def tree_config(arch, work, examples, a):
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    train_limit, eval_limit, _ = sizes(arch, a.quick)
    o = settings(arch, a)
    epochs = (lambda n: 1) if a.quick else (lambda n: n)
    return {
        "name": f"mlperf-tiny-{arch}",
        "paths": "all",
        "baseline": {"model_uri": os.path.join(work, "baseline")},
        "examples": {"uri": examples},
        "data": {"feature_key": "image", "feature_shape": list(ARCHITECTURES[arch].input_shape),
                 "train_limit": train_limit, "eval_limit": eval_limit},
        "prune": {"target_sparsity": 0.5, "epochs": epochs(o["prune_epochs"]), "learning_rate": o["prune_lr"]},
        "cluster": {"number_of_clusters": o["clusters"], "epochs": epochs(o["cluster_epochs"]),
                    "learning_rate": o["cluster_lr"]},
        "qat": {"scheme": "auto", "epochs": epochs(o["qat_epochs"]), "learning_rate": o["qat_lr"]},
        "convert": {"representative_samples": 100 if a.quick else 200},
        "requirements": {"max_int8_accuracy_drop_pp": MAX_PCQAT_DROP_PP},
        "npu": {"targets": [TARGET]},
        "report": {"title": f"MLPerf Tiny {arch} on Fashion-MNIST"},
    }


def leaf_row(leaf):
    """What the table shows of one leaf, from MLMD (`results.leaves`) and its leaf.json."""
    from collabopt.core import artifact_files
    detail = artifact_files.read_leaf(leaf["uri"])
    est = detail["npu"][TARGET]
    layers = detail["layers"]
    return {
        "path": leaf["path"], "mode": detail["mode"], "eval_metric": leaf["eval_metric"] or "accuracy",
        "fp32_metric": leaf["fp32_metric"], "int8_metric": leaf["int8_metric"],
        "drop_pp": 100.0 * leaf["metric_drop"],  # accuracy and AUC: fractions
        "all_int8": all(l["dtype"] == "int8" for l in layers), "npu_op_pct": est["npu_op_pct"],
        "cpu_ops": est["cpu_ops"], "tflite_bytes": leaf["tflite_bytes"], "gzip_bytes": leaf["gzip_bytes"],
        "saving_pct": leaf["saving_pct"], "sparsity": leaf["sparsity"],
        "max_unique_per_channel": leaf["max_unique_per_channel"],
        "max_unique_per_tensor": leaf["max_unique_per_tensor"], "cycles": est["npu_cycles"],
        "encoded_weights_bytes": est["encoded_weights_bytes"], "excluded_layers": leaf["excluded_layers"],
        "blessed": leaf["blessed"], "reasons": leaf["reasons"],
    }


def run_classifier(arch, a, out):
    work = os.path.join(out, arch)
    if os.path.isdir(work):
        shutil.rmtree(work)  # our own previous results: never report a stale run
    train_limit, eval_limit, epochs = sizes(arch, a.quick)
    from collabopt.benchmarks.mlperf_tiny_models import ARCHITECTURES
    examples = prepare(arch, os.path.join(work, "examples"), train_limit, eval_limit)
    baseline = common.train_baseline(build(arch), examples, os.path.join(work, "baseline"),
                                     feature_shape=ARCHITECTURES[arch].input_shape, epochs=epochs,
                                     final_lr_epochs=0 if a.quick else 1)
    return run_tree(arch, work, baseline, tree_config(arch, work, examples, a))


def run_tree(arch, work, baseline, config):
    """`config` through pipelines/tree.py on LocalDagRunner; every leaf's row, the checks and, per
    path, its .tflite (the Convert_<path> node's output)."""
    from collabopt.mlmd import results
    from collabopt import runners
    from collabopt.components import keys
    from collabopt.core import artifact_files
    from collabopt.pipelines import tree
    print(f"[{arch}] baseline: {baseline}", flush=True)
    pipeline_root, mlmd = runners.paths(os.path.join(work, "run"))
    with common.Timer() as t:
        runners.run(tree.create_pipeline(config, pipeline_root, mlmd), "local")
    store = results.connect(mlmd)
    execs = results.executions(store)
    leaves = [leaf_row(l) for l in results.leaves(store, execs=execs)]
    tflite = {e["node"][len("Convert_"):]: os.path.join(e["outputs"][keys.TFLITE_MODEL_KEY][0].uri,
                                                        artifact_files.TFLITE_FILE)
              for e in execs if e["node"].startswith("Convert_") and e["outputs"].get(keys.TFLITE_MODEL_KEY)}
    return {"arch": arch, "baseline": baseline, "config": config, "pipeline_seconds": round(t.s, 1), "mlmd": mlmd,
            "report_html": os.path.join(work, "run", "report.html"), "leaves": leaves, "checks": checks(leaves),
            "tflite": tflite}


def metric_of(leaf):
    return {"accuracy": "accuracy", "auc": "AUC"}[leaf.get("eval_metric", "accuracy")]


def int8_of(leaf):
    """The leaf's INT8 metric (`int8_accuracy` in results written before the metric was configurable)."""
    return leaf["int8_metric"] if "int8_metric" in leaf else leaf["int8_accuracy"]


def checks(leaves):
    by = {l["path"]: l for l in leaves}
    out = [{"check": "every leaf full INT8 with 100% of operators on the NPU (" + TARGET + ")",
            "ok": all(l["all_int8"] and l["npu_op_pct"] == 100.0 for l in leaves),
            "detail": ", ".join(f"{l['path']} {l['npu_op_pct']}%" for l in leaves if l["npu_op_pct"] != 100.0)
            or "all leaves"}]
    pc = by.get("prune_cluster_pcqat")
    if pc:
        out.append({"check": f"PCQAT INT8 {metric_of(pc)} drop vs the baseline's INT8 <= {MAX_PCQAT_DROP_PP} pp",
                    "ok": pc["drop_pp"] <= MAX_PCQAT_DROP_PP,
                    "detail": f"{int8_of(pc):.2%} vs {int8_of(by['ptq']):.2%} (drop {pc['drop_pp']:+.2f} pp)"})
    return out


# ---------------------------------------------------------------- AD: the autoencoder

AD_TRAINING = {"target": "features", "loss": "mse", "eval_metric": "auc"}
MAX_AD_AUC_DROP = MAX_PCQAT_DROP_PP / 100  # the same 1.5 pp, in AUC (a fraction)


def run_autoencoder(a, out):
    """AD through `paths: all` like the classifiers, fine-tuned on its reconstruction MSE; the tree
    evaluates one metric per run (AUC of the reconstruction error, anomaly = label 1), so each leaf's
    INT8 MSE on the normal class is computed here from its .tflite (`leaf_mse`)."""
    from collabopt.core.model import keras_io
    from collabopt.core import stages
    from collabopt.core.tfenv import keras

    work = os.path.join(out, "ad")
    if os.path.isdir(work):
        shutil.rmtree(work)
    train_limit, eval_limit, epochs = sizes("ad", a.quick)
    examples = prepare("ad", os.path.join(work, "examples"), train_limit, eval_limit)
    spec = stages.DataSpec(examples, feature_shape=(640,), target="features")
    model = build("ad")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    with common.Timer() as t:
        model.fit(spec.train_dataset(64), epochs=epochs, verbose=0)
    keras_io.save_model(model, os.path.join(work, "baseline"))
    baseline = {"train_examples": spec.count(spec.train_split), "eval_examples": spec.count(spec.eval_split),
                "epochs": epochs, "params": int(model.count_params()), "train_seconds": round(t.s, 1)}
    config = {**tree_config("ad", work, examples, a), "training": dict(AD_TRAINING),
              "requirements": {"max_metric_drop": MAX_AD_AUC_DROP}}
    res = run_tree("ad", work, baseline, config)
    for leaf in res["leaves"]:
        leaf["int8_normal_mse"] = leaf_mse(res["tflite"][leaf["path"]], spec)
    return res


def leaf_mse(tflite_path, spec):
    """Mean reconstruction MSE of the INT8 model (dequantized) over the eval split's normal examples."""
    from collabopt.core.tflite import flatbuffer
    from collabopt.core.data import examples_io
    from collabopt.core.evaluation import metrics
    x, anomaly = examples_io.read_examples(spec.examples_uri, spec.eval_split, feature_shape=spec.feature_shape)
    with open(tflite_path, "rb") as f:
        err = metrics.errors(flatbuffer.int8_outputs(f.read(), x), x)
    return float(err[anomaly == 0].mean())


# ---------------------------------------------------------------- tables

def table(res):
    ad = any("int8_normal_mse" in l for l in res["leaves"])
    head = (["leaf", "INT8 AUC" if ad else "INT8 acc", "drop pp"] + (["INT8 MSE (normal)"] if ad else [])
            + ["all INT8", "NPU ops", "bytes -> gzip (saving)", "sparsity", "uniq/tensor", "uniq/ch",
               "u55-128 cycles", "encoded weights B"])
    rows = []
    for l in res["leaves"]:
        rows.append([l["path"], f"{int8_of(l):.3f}" if ad else common.pct(int8_of(l)), f"{l['drop_pp']:+.2f}"]
                    + ([f"{l['int8_normal_mse']:.4f}"] if ad else [])
                    + ["yes" if l["all_int8"] else "NO", f"{l['npu_op_pct']:.0f}%",
                     f"{l['tflite_bytes']:,} -> {l['gzip_bytes']:,} ({l['saving_pct']:.1f}%)",
                     common.pct(l["sparsity"], 1), l["max_unique_per_tensor"], l["max_unique_per_channel"],
                     f"{l['cycles']:,}", f"{l['encoded_weights_bytes']:,}"])
    return common.md_table(head, rows)


def main(argv=None):
    a = parse_args(argv)
    done, meta = common.run_each(
        "mlperf_tiny", a, lambda arch, out: run_autoencoder(a, out) if arch == "ad" else run_classifier(arch, a, out))
    for res in done:
        b = res["baseline"]
        print(f"\n### {res['arch']} ({b['params']:,} params; baseline trained on {b['train_examples']:,} images, "
              f"{b['epochs']} epochs; evaluated on {b['eval_examples']:,}; {res['seconds']:.0f} s)\n")
        print(table(res))
        print()
        for c in res["checks"]:
            print(f"- {'MET' if c['ok'] else 'MISSED'}: {c['check']}: {c['detail']}")
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']})")
    return done


if __name__ == "__main__":
    main()
