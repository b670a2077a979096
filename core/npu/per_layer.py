"""Where the NPU time goes: Vela's per-layer cost, mapped back to Keras layers, and the channel
granularity of each Ethos-U.

`vela --verbose-performance` writes `<model>_per-layer.csv`: one row per operator Vela scheduled
(a TFLite op may become several: MEAN -> DepthwiseConv2D + Mul), with Op Cycles = max(NPU cycles,
access cycles of each memory). Rows are named by the TFLite op's output tensor, which carries the
Keras layer name. No TensorFlow import (LiteRT's interpreter only).
"""
import csv
import math
import re
from pathlib import Path

from collabopt.core.npu import vela
from collabopt.core.tflite import flatbuffer

# OFM micro-block (height, width, depth) per accelerator: the depth is the output-channel step of
# the MAC array. Vela 5.2 ethosu/regor/architecture/ethosu55/ethos_u55.cpp s_EthosU55Configs,
# ethosu65/ethos_u65.cpp s_EthosU65Configs, ethosu85/ethos_u85.cpp s_EthosU85Configs.
MICRO_BLOCKS = {
    "ethos-u55-32": ((1, 1, 4),), "ethos-u55-64": ((1, 1, 8),), "ethos-u55-128": ((1, 2, 8),),
    "ethos-u55-256": ((2, 2, 8),), "ethos-u65-256": ((2, 2, 8),), "ethos-u65-512": ((2, 2, 8),),
    "ethos-u85-128": ((1, 2, 8), (1, 1, 16)),
    "ethos-u85-256": ((1, 2, 16), (1, 4, 8), (2, 2, 8)),
    "ethos-u85-512": ((2, 2, 16), (1, 4, 16)),
    "ethos-u85-1024": ((2, 2, 32), (1, 4, 32), (2, 4, 16)),
    "ethos-u85-2048": ((2, 2, 64), (1, 4, 64), (4, 4, 16)),
}
_MEMORIES = ("SRAM AC", "DRAM AC", "OnFlash AC", "OffFlash AC")
PER_LAYER, CPU_OPERATORS = "per_layer", "cpu_operators"  # stats.json / leaf.json / MLMD (JSON) keys
# One Keras layer's row of the per-layer view (the JSON, the report and the MLMD property).
VIEW_KEYS = ("layer", "cycles", "npu_cycles", "memory_cycles", "macs", "mac_util_pct", "bound", "channels",
             "block_util", "ops")


def channel_granularity(accelerator):
    """Channels per step of NPU cost: widths between multiples of this cost as the next multiple.

    8 on Ethos-U55/U65 (OFM and IFM micro-blocks 8 deep; U55-32's OFM block is 4 deep but its IFM
    block is 8), 16 on Ethos-U85 (16-deep blocks for depthwise/pooling and 16-channel bricks).
    """
    if accelerator not in MICRO_BLOCKS:
        raise ValueError("unknown accelerator %r (known: %s)" % (accelerator, ", ".join(MICRO_BLOCKS)))
    return 16 if accelerator.startswith("ethos-u85") else 8


def m_by_n_note(m_by_n, targets):
    """One line when M:N sparsity cannot buy NPU time on any of `targets`, else None: only Ethos-U85
    halves the MAC cycles of 2:4-sparse Conv2D / FullyConnected weights (Vela 5.2
    ethos_u85_performance.cpp); Ethos-U55/U65 cycles depend on shapes only, the zeros only shrink
    the encoded weights."""
    if not m_by_n or any(t.startswith("ethos-u85") for t in targets):
        return None
    m, n = m_by_n
    return (f"prune.m_by_n {m}:{n} saves flash on {', '.join(targets)}, not time: only Ethos-U85 skips "
            "2:4-sparse weights (an ethos-u85 target shows the gain)")


def block_util(channels, granularity):
    """Share of the channel blocks a width fills: 60 channels in blocks of 8 -> 60/64."""
    return channels / (math.ceil(channels / granularity) * granularity) if channels else None


def parse_per_layer(csv_path):
    """Rows of Vela's per-layer CSV: {op, vela_op, target, name, cycles, npu_cycles, access (dict per
    memory), macs, util_pct, bound}; bound is 'memory' where an access column exceeds the NPU cycles,
    'compute' otherwise, 'cpu' for an operator left on the CPU."""
    rows = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            access = {k.replace(" AC", "").lower(): int(float(r[k])) for k in _MEMORIES}
            npu = int(float(r["NPU"]))
            bound = "cpu" if r["Target"] != "NPU" else ("memory" if max(access.values()) > npu else "compute")
            rows.append({"op": r["Original Operator"], "vela_op": r["NNG Operator"], "target": r["Target"],
                         "name": r["Name"].strip(), "cycles": int(float(r["Op Cycles"])), "npu_cycles": npu,
                         "access": access, "macs": int(float(r["MAC Count"])),
                         "util_pct": float(r["Util% (MAC)"]), "bound": bound})
    return rows


_CPU_OP = re.compile(r"^Warning \(supported operators\) operator: (\S+), ofm: '([^']*)'\n((?:Reason: .*\n?)+)", re.M)


def parse_cpu_ops(stdout):
    """Operators Vela left on the CPU, with its reasons: [{op, name, reason}] (from its stdout)."""
    return [{"op": op, "name": name, "reason": "; ".join(ln[len("Reason: "):].strip() for ln in reasons.splitlines())}
            for op, name, reasons in _CPU_OP.findall(stdout)]


def tensor_layers(tflite_path):
    """({output tensor name: Keras layer name}, {Keras layer: output channels}) of every operator of an
    (input) TFLite model: the layer from the weight tensor for CONV_2D / DEPTHWISE_CONV_2D /
    FULLY_CONNECTED (an output named 'StatefulPartitionedCall:0' says nothing), else from the output
    tensor's own name."""
    it = flatbuffer.interpreter(model_path=tflite_path)
    details = {t["index"]: t for t in it.get_tensor_details()}
    table, channels = {}, {}
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list
        outs = [i for i in op["outputs"] if i >= 0]
        ins = [i for i in op["inputs"] if i >= 0]
        kernel = op["op_name"] in flatbuffer.KERNEL_OPS and len(ins) > 1
        src = details[ins[1]]["name"] if kernel else (details[outs[0]]["name"] if outs else "")
        for o in outs:
            layer = table[details[o]["name"]] = layer_from_tensor(src)
            shape = details[o]["shape"]
            if len(shape):
                channels[layer] = int(shape[-1])
    return table, channels


def layer_from_tensor(name, layer_names=None):
    """The Keras layer a TFLite tensor name points at: 'm/pw_1_relu/Relu;m/pw_1/Conv2D' -> 'pw_1'
    (the part ending in a kernel op wins), 'm/avg_pool/Mean' -> 'avg_pool', 'm/quant_pw_1/Conv2D' ->
    'pw_1'. With `layer_names`, only a known layer is returned (None if no part names one)."""
    parts = [p.split("/") for p in name.split(";")]
    kernel = [s[-2] for s in parts if len(s) >= 2 and s[-1].rstrip("0123456789") in ("Conv2D", "depthwise", "MatMul")]
    cands = kernel + [s[i] for s in parts for i in range(len(s) - 2, 0, -1)]
    if layer_names is None:  # QAT wrappers prefix the Keras name (as flatbuffer.layer_stats drops it)
        return re.sub(r"^quant_", "", cands[0]) if cands else name
    return next((c for c in cands if c in layer_names), None)


def keras_rows(rows, table, layer_names=None):
    """Per-layer rows grouped by Keras layer: {layer: {cycles, npu_cycles, macs, access, bound, util, ops}}.
    A row whose name is a tensor of `table` (tensor_layers) takes that layer; Vela's own tensors
    ('..._intermediate') are matched without the suffix; unknown names go under the name itself."""
    out = {}
    for r in rows:
        name = r["name"]
        layer = table.get(name) or table.get(re.sub(r"_intermediate$", "", name))
        if layer is None or (layer_names is not None and layer not in layer_names):
            layer = layer_from_tensor(name, layer_names) or name
        d = out.setdefault(layer, {"cycles": 0, "npu_cycles": 0, "macs": 0, "ops": [], "util_x_cycles": 0.0,
                                   "access": {k.replace(" AC", "").lower(): 0 for k in _MEMORIES}})
        d["cycles"] += r["cycles"]
        d["npu_cycles"] += r["npu_cycles"]
        d["macs"] += r["macs"]
        d["util_x_cycles"] += r["util_pct"] * r["cycles"] if r["macs"] else 0.0
        d["ops"].append(r["vela_op"] if r["target"] == "NPU" else "CPU:" + r["op"])
        for k, v in r["access"].items():
            d["access"][k] += v
    for d in out.values():
        cpu = all(op.startswith("CPU:") for op in d["ops"])
        d["bound"] = "cpu" if cpu else "memory" if max(d["access"].values()) > d["npu_cycles"] else "compute"
        # Vela's Util% is MACs / (cycles x peak MACs per cycle): a cycle-weighted mean is the layer's own
        d["mac_util_pct"] = d.pop("util_x_cycles") / d["cycles"] if d["cycles"] else 0.0
    return out


def view(layers, channels, accelerator):
    """The per-layer view (one dict of VIEW_KEYS per Keras layer, in execution order) of `keras_rows`."""
    g = channel_granularity(accelerator)
    out = []
    for name, d in layers.items():
        c = channels.get(name)
        util = block_util(c, g)
        out.append({"layer": name, "cycles": d["cycles"], "npu_cycles": d["npu_cycles"],
                    "memory_cycles": max(d["access"].values()), "macs": d["macs"],
                    "mac_util_pct": round(d["mac_util_pct"], 2), "bound": d["bound"], "channels": c,
                    "block_util": None if util is None else round(util, 4), "ops": list(d["ops"])})
    return out


def measure(tflite_path, output_dir, accelerator="ethos-u55-128", layer_names=None, **kw):
    """Vela on one INT8 model: the summary of `vela.compile_for_npu` plus `rows` (per Vela operator),
    `layers` (per Keras layer), `per_layer` (their `view`) and `cpu_operators` (with Vela's reasons)."""
    out = Path(output_dir)
    csv_path = out.resolve() / (Path(tflite_path).stem + "_per-layer.csv")
    csv_path.unlink(missing_ok=True)  # never a stale file of an earlier compile
    extra = ["--verbose-performance", "--show-cpu-operations", *kw.pop("extra_args", ())]
    res = vela.compile_for_npu(tflite_path, out, accelerator, extra_args=extra, **kw)
    if not csv_path.is_file():
        raise vela.VelaError("vela --verbose-performance wrote no %s" % csv_path)
    rows = parse_per_layer(csv_path)
    table, channels = tensor_layers(tflite_path)
    layers = keras_rows(rows, table, layer_names)
    stdout = (out / "vela_stdout.txt").read_text()
    res.update({"rows": rows, "layers": layers, PER_LAYER: view(layers, channels, accelerator),
                CPU_OPERATORS: parse_cpu_ops(stdout), "per_layer_csv": str(csv_path)})
    return res
