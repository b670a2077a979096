"""The seed post's result tables, redone on Fashion-MNIST through collabopt's deployment tree.

For each architecture (a DS-CNN-style depthwise-separable CNN, and MobileNet v1 from
tf_keras.applications, alpha 0.25, trained here from scratch on 32x32 zero-padded images):
  1. write the Examples folder (Split-train, Split-eval) and train the baseline in this script;
  2. run `paths: all` of `pipelines/tree.py` on LocalDagRunner with that SavedModel and Examples
     folder imported (baseline.model_uri, examples.uri), the seed's parameters (50% sparsity;
     8 clusters for the DS-CNN, 16 for MobileNet) and Vela for ethos-u55-128 and ethos-u65-256;
  3. read the 8 leaves back from MLMD (`results.leaves`) and each leaf.json for per-layer detail;
  4. print one table per architecture with the seed's numbers beside ours, check the targets
     (PCQAT saving >= pruned+clustered PTQ saving - 1 pp; PCQAT INT8 within 1.5 pp of the baseline's
     INT8; every leaf's NPU cycles and weight memory no worse than the baseline's), and write
     seed_table.json and one PNG per architecture to benchmarks/results/seed_table/.

    .venv/bin/python benchmarks/seed_table.py                       # defaults: ~16 min on 2 cores
    .venv/bin/python benchmarks/seed_table.py --train-limit 0 --baseline-epochs ds_cnn=10,mobilenet=20  # bigger
    .venv/bin/python benchmarks/seed_table.py --arch ds_cnn --baseline-train-limit 1000 \
        --train-limit 1000 --eval-limit 500 --baseline-epochs 1 --final-lr-epochs 0      # smoke test
"""
import argparse
import os
import shutil
import sys

from collabopt.benchmarks import common  # noqa: E402

ARCHS = ("ds_cnn", "mobilenet")
CLUSTERS = {"ds_cnn": 8, "mobilenet": 16}  # the seed: 8 for DS-CNN-L, 16 for MobileNet v1
SIZE = {"ds_cnn": 28, "mobilenet": 32}     # MobileNet needs >= 32x32 input
TARGETS = ("ethos-u55-128", "ethos-u65-256")
LEAVES = ("ptq", "qat", "prune_ptq", "prune_pqat", "prune_cluster_ptq", "prune_cluster_pcqat", "cluster_ptq",
          "cluster_cqat")

# The seed post's numbers (TFMOT collaborative optimization blog, Oct 2021): FP32 (fake-INT8 for QAT
# models) and INT8 top-1, INT8 .tflite bytes -> gzip bytes. Which table each row comes from is in "src".
# The seed has no DS-CNN clustering-only rows; its MobileNet CQAT rows are on CIFAR-10 with sizes only.
SEED = {
    "ds_cnn": {
        "_model": "DS-CNN-L (keyword spotting)",
        "ptq": dict(fp32=95.06, int8=94.35, size=(506400, 425006), src="PCQAT table, baseline"),
        "qat": dict(fp32=94.85, int8=94.82, size=(507296, 424368), src="PCQAT table, QAT"),
        "prune_ptq": dict(fp32=94.07, int8=93.80, size=(506400, 317937), src="PCQAT table, pruned 50%"),
        "prune_pqat": dict(fp32=94.128, int8=94.13, size=(512032, 303997), src="PQAT table, PQAT"),
        "prune_cluster_ptq": dict(fp32=93.76, int8=93.21, size=(506400, 205333), src="PCQAT table, pruned+clustered (8)"),
        "prune_cluster_pcqat": dict(fp32=94.28, int8=94.06, size=(507296, 201744), src="PCQAT table, PCQAT"),
    },
    "mobilenet": {
        "_model": "MobileNet v1 (ImageNet; CQAT rows: CIFAR-10)",
        "ptq": dict(fp32=70.98, int8=70.37, size=(4665552, 3886236), src="PCQAT table, baseline"),
        "qat": dict(fp32=70.88, int8=70.87, size=(4569416, 3808781), src="PCQAT table, QAT"),
        "prune_ptq": dict(fp32=70.49, int8=69.85, size=(4665552, 2909148), src="PCQAT table, pruned 50%"),
        "prune_pqat": dict(fp32=70.29, int8=70.29, size=(4569416, 2869600), src="PQAT table, PQAT"),
        "prune_cluster_ptq": dict(fp32=67.64, int8=66.89, size=(4665552, 2013010), src="PCQAT table, pruned+clustered (16)"),
        "prune_cluster_pcqat": dict(fp32=67.80, int8=68.63, size=(4569472, 1943957), src="PCQAT table, PCQAT"),
        # CIFAR-10 CQAT table: sizes only ("Size" row), no bytes -> gzip pair
        "cluster_ptq": dict(fp32=94.48, int8=94.41, size=(None, 2000000), src="CIFAR-10 CQAT table, clustered (16)"),
        "cluster_cqat": dict(fp32=94.60, int8=94.52, size=(None, 1940000), src="CIFAR-10 CQAT table, CQAT"),
    },
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default=",".join(ARCHS), help="comma-separated: ds_cnn,mobilenet")
    ap.add_argument("--baseline-train-limit", type=int, default=0, help="images the baseline trains on (0: all 60k)")
    ap.add_argument("--train-limit", type=int, default=20000, help="images every fine-tuning stage uses (data.train_limit)")
    ap.add_argument("--eval-limit", type=int, default=0, help="eval images (0: the whole 10k test set)")
    ap.add_argument("--baseline-epochs", default="ds_cnn=3,mobilenet=6",
                    help="baseline epochs at lr 1e-3, per arch (name=n,...) or one number")
    ap.add_argument("--final-lr-epochs", type=int, default=1, help="then this many baseline epochs at lr 1e-4")
    ap.add_argument("--ds-width", type=int, default=64, help="DS-CNN channels (the demo's: 64)")
    ap.add_argument("--ds-blocks", type=int, default=4)
    ap.add_argument("--prune-epochs", type=int, default=4)
    ap.add_argument("--prune-lr", type=float, default=1e-3)
    ap.add_argument("--cluster-epochs", type=int, default=1)
    ap.add_argument("--cluster-lr", type=float, default=1e-4)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--beam-arg", action="append", default=None,
                    help="beam_pipeline_args entry (repeatable); default --direct_running_mode=in_memory")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/seed_table)")
    return ap.parse_args(argv)


def per_arch(spec, arch):
    if "=" not in spec:
        return int(spec)
    return int(dict(p.split("=") for p in spec.split(","))[arch])


def build(arch, a):
    from collabopt.core.model import baseline
    if arch == "ds_cnn":
        return baseline.ds_cnn((SIZE[arch], SIZE[arch], 1), 10, width=a.ds_width, blocks=a.ds_blocks)
    return common.mobilenet((SIZE[arch], SIZE[arch], 1), 10)


def tflite_paths(store):
    """{path: .tflite file} from the Convert_<path> executions of the latest run."""
    from collabopt.mlmd import results
    from collabopt.core import artifact_files
    out = {}
    for ex in results.executions(store):
        if ex["node"].startswith("Convert_") and ex["outputs"].get("tflite_model"):
            out[ex["node"][len("Convert_"):]] = os.path.join(ex["outputs"]["tflite_model"][0].uri, artifact_files.TFLITE_FILE)
    return out


def component_seconds(store):
    """{node: wall seconds} from MLMD execution timestamps (create -> last update)."""
    from collabopt.mlmd import results
    run = results.latest_run(store)
    secs = {}
    for ex in store.get_executions_by_context(run.id):
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(ex.id)
                     if store.get_context_types_by_id([c.type_id])[0].name == "node"), ex.name)
        secs[node] = (ex.last_update_time_since_epoch - ex.create_time_since_epoch) / 1000.0
    return secs


def run_arch(arch, a, out):
    from collabopt.mlmd import results
    from collabopt import runners
    from collabopt.core import artifact_files
    from collabopt.pipelines import tree

    work = os.path.join(out, arch)
    if os.path.isdir(work):
        shutil.rmtree(work)  # our own previous results: never report a stale run
    size, k = SIZE[arch], CLUSTERS[arch]
    examples = common.write_fashion_mnist(os.path.join(work, "examples"), train_limit=a.baseline_train_limit,
                                          eval_limit=a.eval_limit, size=size)
    model = build(arch, a)
    baseline = common.train_baseline(model, examples, os.path.join(work, "baseline"), feature_shape=(size, size, 1),
                                     epochs=per_arch(a.baseline_epochs, arch), final_lr_epochs=a.final_lr_epochs)
    print(f"[{arch}] baseline: {baseline}", flush=True)
    targets = a.targets.split(",")
    config = {
        "name": f"seed-{arch.replace('_', '-')}",
        "paths": "all",
        "baseline": {"model_uri": os.path.join(work, "baseline")},
        "examples": {"uri": examples},
        "data": {"feature_shape": [size, size, 1], "train_limit": a.train_limit, "eval_limit": 0},
        "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "epochs": a.prune_epochs,
                  "learning_rate": a.prune_lr},
        "cluster": {"number_of_clusters": k, "centroid_init": "kmeans++", "epochs": a.cluster_epochs,
                    "learning_rate": a.cluster_lr},
        "qat": {"scheme": "auto", "epochs": a.qat_epochs, "learning_rate": a.qat_lr},
        "npu": {"targets": targets},
        "report": {"title": f"seed table: {arch} on Fashion-MNIST"},
        "beam_pipeline_args": a.beam_arg or ["--direct_running_mode=in_memory"],
    }
    pipeline_root, mlmd = runners.paths(os.path.join(work, "run"))
    with common.Timer() as t:
        runners.run(tree.create_pipeline(config, pipeline_root, mlmd), "local")
    store = results.connect(mlmd)
    tflites = tflite_paths(store)
    leaves = []
    for leaf in results.leaves(store):
        detail = artifact_files.read_leaf(leaf["uri"])
        vela = {}
        for target in targets:
            est = detail["npu"][target]
            vela[target] = {**leaf["npu"][target], "encoded_weights_bytes": est["encoded_weights_bytes"],
                            "weights_area": est["weights_area"], "weights_bytes": est["weights_area_bytes"],
                            "cpu_ops": est["cpu_ops"]}
        layers = detail["layers"]
        weighted = [l for l in layers if l["op"] != "DEPTHWISE_CONV_2D"]
        leaves.append({**{k2: v for k2, v in leaf.items() if k2 != "npu"}, "npu": vela,
                       "eval_examples": detail["eval_examples"], "mode": detail["mode"],
                       "tflite": tflites.get(leaf["path"]),
                       "max_unique_per_tensor_all": max(l["unique_per_tensor"] for l in layers),
                       "conv_dense_sparsity": _avg([l["sparsity"] for l in weighted], [_n(l) for l in weighted]),
                       "layers": layers})
    leaves.sort(key=lambda l: LEAVES.index(l["path"]))
    return {"arch": arch, "clusters": k, "input": [size, size, 1], "config": config, "baseline": baseline,
            "pipeline_seconds": round(t.s, 1), "component_seconds": component_seconds(store), "mlmd": mlmd,
            "report_html": os.path.join(work, "run", "report.html"), "leaves": leaves,
            "checks": checks(leaves, targets, work)}


def _n(layer):
    n = 1
    for d in layer["shape"]:
        n *= d
    return n


def _avg(values, weights):
    return sum(v * w for v, w in zip(values, weights)) / sum(weights) if weights else None


def vela_ops(tflite, target, out_dir):
    """Vela's per-operator estimate (--verbose-performance): [{op, name, cycles, staging, dram_ac, flash_ac}]."""
    import subprocess
    os.makedirs(out_dir, exist_ok=True)
    vela = os.path.join(os.path.dirname(sys.executable), "vela")
    text = subprocess.run([vela, tflite, "--accelerator-config", target, "--output-dir", out_dir,
                           "--verbose-performance"], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(out_dir, "vela_verbose_performance.txt"), "w") as f:
        f.write(text)
    ops, on = [], False
    for line in text.splitlines():
        if line.startswith("Original Operator"):
            on = True
            continue
        parts = line.split()
        if on and not parts:
            break
        if on and len(parts) >= 16 and parts[2] == "NPU":
            ops.append({"op": f"{parts[0]}/{parts[1]}", "name": parts[-1], "cycles": int(parts[5]),
                        "staging": int(parts[3]), "dram_ac": int(parts[9]), "flash_ac": int(parts[11])})
    return ops


def explain_cycles(base, leaf, target, work):
    """Where a leaf's Vela cycles exceed the baseline's: the operators with the largest increase."""
    d = os.path.join(work, "vela_diag", target)
    a = vela_ops(base["tflite"], target, os.path.join(d, base["path"]))
    b = vela_ops(leaf["tflite"], target, os.path.join(d, leaf["path"]))
    if len(a) != len(b):
        return f"(operator lists differ: {len(a)} vs {len(b)})"
    diffs = sorted(((y["cycles"] - x["cycles"], x, y) for x, y in zip(a, b)), key=lambda t: -t[0])
    mem = "dram_ac" if any(x["dram_ac"] for x in a) else "flash_ac"
    return "; ".join(f"{x['op']} {x['name'].split(';')[0]} {x['cycles']:,} -> {y['cycles']:,} cycles "
                     f"(SRAM staging {x['staging']:,} -> {y['staging']:,} B, {mem.split('_')[0].upper()} access cycles "
                     f"{x[mem]:,} -> {y[mem]:,})" for dc, x, y in diffs[:2] if dc > 0)


def checks(leaves, targets, work=None):
    """The issue's targets, each with its margin (positive: met by that much)."""
    by = {l["path"]: l for l in leaves}
    out = []
    if "prune_cluster_pcqat" in by and "prune_cluster_ptq" in by:
        pc, pcq = by["prune_cluster_pcqat"], by["prune_cluster_ptq"]
        margin = pc["saving_pct"] - (pcq["saving_pct"] - 1.0)
        out.append({"check": "PCQAT saving >= pruned+clustered PTQ saving - 1 pp", "ok": margin >= 0,
                    "detail": f"{pc['saving_pct']:.2f}% vs {pcq['saving_pct']:.2f}% - 1 pp", "margin_pp": round(margin, 2)})
        base = by["ptq"]
        drop = 100 * (base["int8_accuracy"] - pc["int8_accuracy"])
        out.append({"check": "PCQAT INT8 accuracy within 1.5 pp of the baseline's INT8", "ok": drop <= 1.5,
                    "detail": f"{pc['int8_accuracy']:.2%} vs {base['int8_accuracy']:.2%} (drop {drop:+.2f} pp)",
                    "margin_pp": round(1.5 - drop, 2)})
    base = by["ptq"]
    for target in targets:
        for key, name in (("cycles", "NPU cycles"), ("weights_bytes", "weight memory (flash/DRAM)")):
            ref = base["npu"][target][key]
            worse = {l["path"]: l["npu"][target][key] for l in leaves if l["npu"][target][key] > ref}
            ratio = max(l["npu"][target][key] for l in leaves) / ref
            c = {"check": f"{target}: every leaf's {name} <= the baseline's ({ref:,})", "ok": not worse,
                 "detail": ("worse: " + ", ".join(f"{p} {v:,} (+{100 * (v / ref - 1):.1f}%)" for p, v in worse.items()))
                 if worse else f"worst leaf at {ratio:.3f}x the baseline",
                 "worst_ratio": round(ratio, 4)}
            if worse and key == "cycles" and work:
                c["why"] = {p: explain_cycles(base, by[p], target, work) for p in worse}
            out.append(c)
    return out


def seed_cells(arch, path):
    s = SEED[arch].get(path)
    if not s:
        return ["-", "-", "-"]
    raw, gz = s["size"]
    size = f"{raw:,} -> {gz:,} ({100 * (raw - gz) / raw:.2f}%)" if raw else f"size {gz:,}"
    return [f"{s['fp32']:.2f}%", f"{s['int8']:.2f}%", size]


def table(res):
    targets = list(res["leaves"][0]["npu"])
    short = {t: t.replace("ethos-", "") for t in targets}
    head = ["leaf", "FP32", "INT8", "bytes -> gzip (saving)", "sparsity", "uniq/tensor", "uniq/ch"]
    for t in targets:
        area = "DRAM" if res["leaves"][0]["npu"][t]["weights_area"] == "DRAM" else "flash"
        head += [f"{short[t]} cycles", f"{short[t]} {area} B"]
    head += ["seed FP32", "seed INT8", "seed bytes -> gzip (saving)"]
    rows = []
    for l in res["leaves"]:
        rows.append([l["path"], common.pct(l["fp32_accuracy"]), common.pct(l["int8_accuracy"]),
                     f"{l['tflite_bytes']:,} -> {l['gzip_bytes']:,} ({l['saving_pct']:.2f}%)",
                     common.pct(l["sparsity"], 1), l["max_unique_per_tensor"], l["max_unique_per_channel"],
                     *[c for t in targets for c in (f"{l['npu'][t]['cycles']:,}", f"{l['npu'][t]['weights_bytes']:,}")],
                     *seed_cells(res["arch"], l["path"])])
    return common.md_table(head, rows)


def plot(res, path):
    plt = common.pyplot()
    leaves, targets = res["leaves"], list(res["leaves"][0]["npu"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6))
    for l in leaves:
        ax1.scatter(l["gzip_bytes"], 100 * l["int8_accuracy"], color="C1" if l["mode"] == "qat" else "C0")
        ax1.annotate(l["path"], (l["gzip_bytes"], 100 * l["int8_accuracy"]), fontsize=8, xytext=(3, 3),
                     textcoords="offset points")
    ax1.set_xlabel("gzip bytes of the INT8 .tflite")
    ax1.set_ylabel("INT8 top-1 accuracy (%)")
    ax1.set_title(f"{res['arch']}: accuracy vs compressed size (orange: QAT leaves)")
    base = {t: leaves[0]["npu"][t] for t in targets}
    width = 0.8 / (2 * len(targets))
    xs = range(len(leaves))
    for i, t in enumerate(targets):
        for j, (key, label) in enumerate((("cycles", "cycles"), ("weights_bytes", "weight bytes"))):
            off = (2 * i + j) * width - 0.4 + width / 2
            ax2.bar([x + off for x in xs], [l["npu"][t][key] / base[t][key] for l in leaves], width,
                    label=f"{t} {label}")
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels([l["path"] for l in leaves], rotation=35, ha="right", fontsize=8)
    ax2.set_ylabel("relative to the baseline's PTQ leaf")
    ax2.set_title("Vela estimates")
    ax2.set_ylim(0, 1.3)
    ax2.legend(fontsize=7, ncol=2, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    a = parse_args(argv)
    results, meta = common.run_each("seed_table", a, lambda arch, out: run_arch(arch, a, out),
                                    after=lambda res, out: plot(res, os.path.join(out, f"seed_table_{res['arch']}.png")))
    out = common.results_dir("seed_table", a.out)
    for res in results:
        b = res["baseline"]
        print(f"\n### {res['arch']} ({res['clusters']} clusters, input {res['input']}; baseline {b['params']:,} params, "
              f"trained on {b['train_examples']:,} images; evaluated on {res['leaves'][0]['eval_examples']:,}; "
              f"seed: {SEED[res['arch']]['_model']})\n")
        print(table(res))
        print()
        for c in res["checks"]:
            print(f"- {'MET' if c['ok'] else 'MISSED'}: {c['check']}: {c['detail']}")
            for p, why in c.get("why", {}).items():
                print(f"  - {p}: {why}")
        print(f"\n({res['arch']}: {res['seconds']:.0f} s, of which the pipeline {res['pipeline_seconds']:.0f} s)")
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']})")
    print(f"results: {out}/seed_table.json, seed_table_<arch>.png")
    return results


if __name__ == "__main__":
    main()
