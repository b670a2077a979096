"""What the deployable INT8 flatbuffer really holds: size, gzip size, per-layer sparsity and
distinct values, and INT8 accuracy with the LiteRT (TFLite) interpreter.

TensorFlow is not imported here: `interpreter` is LiteRT's, so vela.py can use it cheaply.
"""
import gzip
import warnings

import numpy as np

# Ops whose input #1 is the weight kernel, and the axis of the output channel in that tensor.
KERNEL_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
M_BY_N = (2, 4)  # the structured pattern layer_stats counts unless told another (Ethos-U85's 2:4)


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9))


def interpreter(model_content=None, model_path=None, preserve_all_tensors=False):
    """The one place the project creates a TFLite interpreter: LiteRT's (ai-edge-litert), the
    successor of the deprecated tf.lite.Interpreter (same kernels, same INT8 results).

    `preserve_all_tensors` keeps intermediate tensors readable (for reading weights); LiteRT's
    warning that this is a debugging option is silenced, as we ask for it on purpose.
    """
    from ai_edge_litert.interpreter import Interpreter  # lazy: only the stages that run a model need it

    if (model_content is None) == (model_path is None):
        raise ValueError("interpreter() needs exactly one of model_content, model_path")
    kw = {"model_content": bytes(model_content)} if model_content is not None else {
        "model_path": str(model_path)}
    if not preserve_all_tensors:
        return Interpreter(**kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*experimental_preserve_all_tensors", category=UserWarning)
        return Interpreter(**kw, experimental_preserve_all_tensors=True)


def m_by_n_broken(kernel, m_by_n=M_BY_N):
    """(groups broken, groups) of M:N structured sparsity in a TFLite kernel: the aligned groups of N
    along its last axis (the input channels of CONV_2D OHWI and FULLY_CONNECTED OI kernels), per
    output channel and kernel position, the last one zero-padded, that hold fewer than M zeros.
    The grouping is TFMOT's (pruning_utils.weights_rearrange) and Vela's for Ethos-U85
    (ethos_u85_weight_encoder.cpp SparsityTracker: a broken group makes Vela encode the layer dense)."""
    m, n = m_by_n
    w = np.asarray(kernel).reshape(-1, np.shape(kernel)[-1])
    w = np.pad(w, ((0, 0), (0, -w.shape[1] % n)))
    zeros = (w.reshape(w.shape[0], -1, n) == 0).sum(axis=-1)
    return int((zeros < m).sum()), int(zeros.size)


def layer_stats(tflite_bytes, m_by_n=M_BY_N):
    """Per kernel: op, tensor name, shape, dtype, sparsity, distinct values per tensor and per
    output channel (max over channels), the number of quantization scales, and the aligned groups
    that break the `m_by_n` pattern (`m_by_n_broken` of `m_by_n_groups`)."""
    it = interpreter(tflite_bytes, preserve_all_tensors=True)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list
        axis = KERNEL_OPS.get(op["op_name"])
        if axis is None or len(op["inputs"]) < 2:
            continue
        t = tensors[op["inputs"][1]]
        w = it.get_tensor(t["index"])
        per_ch = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        out.append({
            "op": op["op_name"],
            "tensor": t["name"],
            "layer": _layer_name(t["name"]),
            "shape": list(w.shape),
            "dtype": np.dtype(w.dtype).name,
            "sparsity": float(np.mean(w == 0)),
            "unique_per_tensor": int(len(np.unique(w))),
            "max_unique_per_channel": int(max(len(np.unique(r)) for r in per_ch)),
            "num_scales": int(len(t["quantization_parameters"]["scales"])),
            "m_by_n": list(m_by_n), **dict(zip(("m_by_n_broken", "m_by_n_groups"), m_by_n_broken(w, m_by_n))),
        })
    return out


def kernel_codes(tflite_bytes, layer):
    """The stored (int8) values of a kernel, found by the Keras layer name as `layer_stats` reports
    it; None if no kernel has that name."""
    it = interpreter(tflite_bytes, preserve_all_tensors=True)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    for op in it._get_ops_details():  # noqa: SLF001
        if op["op_name"] in KERNEL_OPS and len(op["inputs"]) >= 2:
            t = tensors[op["inputs"][1]]
            if _layer_name(t["name"]) == layer:
                return it.get_tensor(t["index"])
    return None


def _layer_name(weight_tensor_name):
    """Keras layer name from a kernel's tensor name: 'm/quant_pw_1/Conv2D;m/quant_pw_1/...' -> 'pw_1'.

    The part ending in the op's own node (Conv2D, depthwise, MatMul) names the layer; QAT wrappers
    prefix it with 'quant_'.
    """
    for part in weight_tensor_name.split(";"):
        segs = part.split("/")
        # the converter may suffix a digit to the node name (MatMul1, Conv2D1)
        if len(segs) >= 2 and segs[-1].rstrip("0123456789") in ("Conv2D", "depthwise", "MatMul"):
            name = segs[-2]
            return name[len("quant_"):] if name.startswith("quant_") else name
    return weight_tensor_name


def _inputs_by_name(it):
    """{signature input name: input detail} (the names the Keras model gave its inputs)."""
    return it.get_signature_runner().get_input_details()


def quantized(x, detail):
    """x (float) as the input tensor takes it: quantized with the model's own input scale, as a device would."""
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    return np.asarray(x).astype(detail["dtype"])


def int8_outputs(tflite_bytes, x, batch_size=256, interp=None):
    """The quantized model's outputs per row of x (float), dequantized; x an array for a one-input
    model, or a dict {input name: array} setting each input by its name (multi-input models)."""
    it = interp or interpreter(tflite_bytes)
    outp = it.get_output_details()[0]
    if isinstance(x, dict):
        by_name = _inputs_by_name(it)
        missing = sorted(set(by_name) - set(x))
        if missing:
            raise ValueError(f"the model's input(s) {', '.join(missing)} have no feature (features: {', '.join(sorted(x))})")
        feeds = [(by_name[name]["index"], x[name]) for name in by_name]
    else:
        feeds = [(it.get_input_details()[0]["index"], x)]
    details = {d["index"]: d for d in it.get_input_details()}
    outs = []
    for start in range(0, len(feeds[0][1]), batch_size):
        for index, values in feeds:
            it.resize_tensor_input(index, [len(values[start:start + batch_size]), *details[index]["shape"][1:]])
        it.allocate_tensors()
        for index, values in feeds:
            it.set_tensor(index, quantized(values[start:start + batch_size], details[index]))
        it.invoke()
        out = it.get_tensor(outp["index"]).astype(np.float32)
        o_scale, o_zero = outp["quantization"]
        outs.append((out - o_zero) * o_scale if outp["dtype"] in (np.int8, np.uint8) and o_scale else out)
    return np.concatenate(outs) if outs else np.zeros((0, *outp["shape"][1:]), np.float32)


def int8_predictions(tflite_bytes, x, batch_size=256, interp=None):
    """Top-1 class of the quantized model per row of x (float)."""
    out = int8_outputs(tflite_bytes, x, batch_size, interp)
    return np.argmax(out, axis=-1) if len(out) else np.zeros((0,), np.int64)


def int8_accuracy(tflite_bytes, x, y, batch_size=256):
    """Top-1 accuracy of the quantized model on arrays x, y (the configured metric: core.metrics)."""
    return float(np.mean(int8_predictions(tflite_bytes, x, batch_size) == np.asarray(y)))


def summarize(tflite_bytes, m_by_n=None):
    """Size figures and per-layer stats of one flatbuffer, in the seed's terms; `m_by_n`: the
    structured pattern to count per layer (default M_BY_N)."""
    size, gz = len(tflite_bytes), gzip_size(tflite_bytes)
    layers = layer_stats(tflite_bytes, tuple(m_by_n or M_BY_N))
    weighted = [l for l in layers if l["op"] != "DEPTHWISE_CONV_2D"] or layers
    return {
        "tflite_bytes": size,
        "gzip_bytes": gz,
        "saving_pct": 100.0 * (size - gz) / size,
        "sparsity": float(np.average([l["sparsity"] for l in layers],
                                     weights=[np.prod(l["shape"]) for l in layers])) if layers else 0.0,
        "max_unique_per_channel": max((l["max_unique_per_channel"] for l in weighted), default=0),
        "max_unique_per_tensor": max((l["unique_per_tensor"] for l in weighted), default=0),
        "layers": layers,
    }
