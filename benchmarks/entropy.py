"""Compression vs the entropy limit, per leaf of the seed-table run (benchmarks/seed_table.py).

For every weight kernel of a leaf's INT8 flatbuffer (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED;
int8), the empirical order-0 entropy H of its values times its element count: the fewest bytes any
coder that codes each weight on its own with one fixed table per tensor can reach (the table itself
not counted). Biases (int32) are NOT given an entropy bound: almost all their values are distinct, so
the order-0 estimate (log2 of the count) says nothing about them; they are counted with the rest of
the file. The whole-file limit is then: kernels at their entropy + gzip of everything else (the file
with the kernel bytes cut out: biases, quantization scales, graph, names). Next to it: gzip of the
whole file (the seed's "compression"), gzip of the kernels alone, a per-channel entropy (one table
per output channel), and Vela's encoded weight stream (weights + per-channel bias/scale records).

    .venv/bin/python benchmarks/entropy.py          # reads benchmarks/results/seed_table/seed_table.json
    (runs benchmarks/seed_table.py first, with --seed-args, if that file is missing)
"""
import argparse
import gzip
import os
import shlex
import sys
import zlib

from collabopt.benchmarks import common  # noqa: E402

KERNEL_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}  # output-channel axis


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed-results", default=os.path.join(common.RESULTS, "seed_table", "seed_table.json"))
    ap.add_argument("--seed-args", default="", help="arguments for seed_table.py if its results are missing")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/entropy)")
    return ap.parse_args(argv)


def entropy_bits(values):
    """Empirical order-0 entropy (bits per value) of an integer array."""
    import numpy as np
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def gz(b):
    return len(gzip.compress(bytes(b), compresslevel=9))


def huffman_only(b):
    """Raw deflate with Huffman coding only (no LZ77 matches): an order-0 entropy coder in gzip's format."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    return len(c.compress(bytes(b)) + c.flush())


def file_parts(blob):
    """Bytes of the flatbuffer spent on quantization parameters (scale float32 + zero point int64 per
    channel, as stored) and on tensor names."""
    from tensorflow.lite.python import schema_py_generated as schema
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(blob, 0))
    quant = names = 0
    for sg in m.subgraphs:
        for t in sg.tensors:
            names += len(t.name or b"")
            q = t.quantization
            if q is not None:
                quant += 4 * len(q.scale if q.scale is not None else []) + 8 * len(
                    q.zeroPoint if q.zeroPoint is not None else [])
    return {"quant_params_bytes": quant, "tensor_name_bytes": names}


def analyze_tflite(path):
    import numpy as np

    from collabopt.core.tflite import flatbuffer
    with open(path, "rb") as f:
        blob = f.read()
    it = flatbuffer.interpreter(blob)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    kernels, biases, seen = [], [], set()
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list
        axis = KERNEL_OPS.get(op["op_name"])
        if axis is None or len(op["inputs"]) < 2:
            continue
        k = op["inputs"][1]
        if k in seen:
            continue
        seen.add(k)
        w = it.get_tensor(k)
        per_ch = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        h = entropy_bits(w)
        kernels.append({"op": op["op_name"], "tensor": tensors[k]["name"].split(";")[0], "dtype": str(w.dtype),
                        "elements": int(w.size), "unique": int(len(np.unique(w))), "entropy_bits": h,
                        "entropy_bytes": w.size * h / 8,
                        "per_channel_entropy_bytes": sum(r.size * entropy_bits(r) for r in per_ch) / 8,
                        "huffman_only_bytes": huffman_only(w.tobytes()), "raw": w.tobytes()})
        if len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
            biases.append(it.get_tensor(op["inputs"][2]).tobytes())
    # Cut every kernel's bytes out of the file (a constant buffer holds the tensor's data as stored).
    rest, unfound = blob, 0
    for kern in kernels:
        i = rest.find(kern["raw"])
        if i < 0:
            unfound += 1
            continue
        rest = rest[:i] + rest[i + len(kern["raw"]):]
    kernel_raw = b"".join(k.pop("raw") for k in kernels)
    return {
        "tflite_bytes": len(blob), "gzip_bytes": gz(blob),
        "kernel_bytes": len(kernel_raw), "kernel_entropy_bytes": sum(k["entropy_bytes"] for k in kernels),
        "kernel_per_channel_entropy_bytes": sum(k["per_channel_entropy_bytes"] for k in kernels),
        "kernel_gzip_bytes": gz(kernel_raw),
        "kernel_huffman_only_bytes": sum(k.pop("huffman_only_bytes") for k in kernels),
        "bias_bytes": sum(len(b) for b in biases), **file_parts(blob),
        "rest_bytes": len(rest), "rest_gzip_bytes": gz(rest), "kernels_not_located": unfound, "kernels": kernels,
    }


def main(argv=None):
    a = parse_args(argv)
    if not os.path.isfile(a.seed_results):
        print(f"{a.seed_results} missing: running benchmarks/seed_table.py {a.seed_args}", flush=True)
        import seed_table
        seed_table.main(shlex.split(a.seed_args))
    import json
    with open(a.seed_results) as f:
        seed = json.load(f)
    out = common.results_dir("entropy", a.out)
    meta = {**common.provenance(a), "seed_table": {k: seed[k] for k in ("command", "date", "commit")}}
    results = []
    for res in seed["results"]:
        rows = []
        for leaf in res["leaves"]:
            r = analyze_tflite(leaf["tflite"])
            r["limit_bytes"] = r["kernel_entropy_bytes"] + r["rest_gzip_bytes"]
            r["gzip_over_limit"] = r["gzip_bytes"] / r["limit_bytes"]
            r["vela_encoded_weights_bytes"] = {t: v["encoded_weights_bytes"] for t, v in leaf["npu"].items()}
            rows.append({"path": leaf["path"], **r})
        results.append({"arch": res["arch"], "leaves": rows})
    common.write_json(os.path.join(out, "entropy.json"), {**meta, "results": results})
    plot(results, os.path.join(out, "entropy.png"))
    for res in results:
        targets = list(res["leaves"][0]["vela_encoded_weights_bytes"])
        print(f"\n### {res['arch']}\n")
        head = ["leaf", "int8 kernels B", "H0 kernels B (bits/weight)", "H0 per channel B", "gzip(kernels) B",
                "Huffman-only per kernel B", "rest -> gzip B", "limit B", "gzip(file) B", "gzip / limit",
                *[f"Vela encoded {t.replace('ethos-', '')} B" for t in targets]]
        rows = [[l["path"], f"{l['kernel_bytes']:,}",
                 f"{l['kernel_entropy_bytes']:,.0f} ({8 * l['kernel_entropy_bytes'] / l['kernel_bytes']:.2f})",
                 f"{l['kernel_per_channel_entropy_bytes']:,.0f}", f"{l['kernel_gzip_bytes']:,}",
                 f"{l['kernel_huffman_only_bytes']:,}",
                 f"{l['rest_bytes']:,} -> {l['rest_gzip_bytes']:,}", f"{l['limit_bytes']:,.0f}", f"{l['gzip_bytes']:,}",
                 f"{l['gzip_over_limit']:.2f}x", *[f"{l['vela_encoded_weights_bytes'][t]:,}" for t in targets]]
                for l in res["leaves"]]
        print(common.md_table(head, rows))
        p = res["leaves"][0]
        print(f"\n'rest' of the {p['path']} file ({p['rest_bytes']:,} B): biases {p['bias_bytes']:,} B, quantization "
              f"parameters {p['quant_params_bytes']:,} B (float32 scale + int64 zero point per channel), tensor names "
              f"{p['tensor_name_bytes']:,} B, the rest flatbuffer tables and metadata")
        missing = sum(l["kernels_not_located"] for l in res["leaves"])
        if missing:
            print(f"({missing} kernel buffers not found verbatim in their file: counted in 'rest')")
    print(f"\nlimit = kernels at their order-0 entropy (per tensor) + gzip of the rest of the file "
          f"(biases, scales, graph); seed table: {seed['command']} ({seed['date']})")
    print(f"{meta['command']}  ({meta['date']}, commit {meta['commit']})\nresults: {out}/entropy.json, entropy.png")


def plot(results, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.6), squeeze=False)
    series = (("kernel_entropy_bytes", "H0 kernels"), ("kernel_gzip_bytes", "gzip(kernels)"),
              ("limit_bytes", "limit (file)"), ("gzip_bytes", "gzip(file)"), ("vela", "Vela encoded"))
    for ax, res in zip(axes[0], results):
        leaves = res["leaves"]
        w = 0.8 / len(series)
        for j, (key, label) in enumerate(series):
            vals = [next(iter(l["vela_encoded_weights_bytes"].values())) if key == "vela" else l[key] for l in leaves]
            ax.bar([i + j * w - 0.4 + w / 2 for i in range(len(leaves))], vals, w, label=label)
        ax.set_xticks(range(len(leaves)))
        ax.set_xticklabels([l["path"] for l in leaves], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("bytes")
        ax.set_title(f"{res['arch']}: compressed size vs the order-0 entropy limit")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
