"""PCQAT with TFMOT's default (per-channel centroid copies) vs collabopt's shared centroids.

Same pruned+clustered model, same data and seed; reports per-layer distinct int8 values, gzip
saving, INT8 accuracy and Vela's encoded weight size for each, next to the PTQ leaf.
    .venv/bin/python benchmarks/shared_centroids.py [--train 10000 --qat-epochs 2 --qat-lr 1e-4]
"""
import argparse
import json
import os
import tempfile

from collabopt.core.tflite import flatbuffer, convert
from collabopt.core.techniques import optimize
from collabopt.core.model import baseline, train
from collabopt.core.npu import vela
from collabopt.core.data.examples_io import load_fashion_mnist


def leaf(name, tflite, xe, ye, workdir):
    s = flatbuffer.summarize(tflite)
    path = os.path.join(workdir, f"{name}.tflite")
    with open(path, "wb") as f:
        f.write(tflite)
    v = vela.compile_for_npu(path, os.path.join(workdir, name), "ethos-u55-128")
    return {"leaf": name, "int8_accuracy": flatbuffer.int8_accuracy(tflite, xe, ye), "tflite_bytes": s["tflite_bytes"],
            "gzip_bytes": s["gzip_bytes"], "saving_pct": round(s["saving_pct"], 2),
            "max_unique_per_channel": s["max_unique_per_channel"], "max_unique_per_tensor": s["max_unique_per_tensor"],
            "unique_per_tensor": {l["layer"]: l["unique_per_tensor"] for l in s["layers"] if l["op"] != "DEPTHWISE_CONV_2D"},
            "vela_encoded_weights_bytes": v["encoded_weights_bytes"], "vela_flash_bytes": v["flash_bytes"],
            "npu_cycles": v["npu_cycles"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--out", default="benchmarks/results/shared_centroids.json")
    a = ap.parse_args()
    d = load_fashion_mnist(train_limit=a.train, eval_limit=a.eval)
    (x, y), (xe, ye) = d["train"], d["eval"]
    x, xe = x[..., None].astype("float32") / 255, xe[..., None].astype("float32") / 255
    m = baseline.ds_cnn()
    train.fit(m, x, y, epochs=3, learning_rate=1e-3, stage="baseline")
    p = optimize.prune(m, x, y, target_sparsity=0.5, epochs=2)
    c = optimize.cluster(p, x, y, number_of_clusters=8, epochs=1)
    rep = convert.representative(x, 200)
    work = tempfile.mkdtemp()
    rows = [leaf("prune_cluster_ptq", convert.to_int8(c, rep), xe, ye, work)]
    for name, per_channel in (("pcqat_tfmot_default", True), ("pcqat_shared_centroids", False)):
        q, _ = optimize.preserving_qat(c, x, y, scheme="pcqat", epochs=a.qat_epochs, learning_rate=a.qat_lr,
                                       per_channel_clusters=per_channel)
        rows.append(leaf(name, convert.to_int8(q, rep), xe, ye, work))  # rep: TF 2.21 asks; QAT ranges win
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "leaves": rows}, f, indent=1)
    cols = ("leaf", "int8_accuracy", "tflite_bytes", "gzip_bytes", "saving_pct", "max_unique_per_channel",
            "max_unique_per_tensor", "vela_encoded_weights_bytes", "vela_flash_bytes", "npu_cycles")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) and c == "int8_accuracy" else str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
