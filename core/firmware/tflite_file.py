"""What a .tflite flatbuffer holds, read without an interpreter (works for Vela-compiled models, which
no host interpreter runs): the operators it uses, its input/output tensors, and an arena estimate
for a model with an `ethos-u` operator (from Vela's offline memory plan).

Reads the flatbuffer with Vela's generated schema classes (ethosu.vela.tflite: a project dependency,
imports only `flatbuffers` and numpy).
"""
import numpy as np

from collabopt.core.npu.vela import NPU_CUSTOM_OP as ETHOS_U  # Vela's custom operator code
_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}
_ALIGN = 16  # MicroArenaBufferAlignment()


def _model(tflite_bytes):
    from ethosu.vela.tflite.Model import Model
    return Model.GetRootAsModel(bytearray(tflite_bytes), 0)


def builtin_names():
    """{builtin operator code: its schema name ('CONV_2D', ...)}."""
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def operators(tflite_bytes):
    """The distinct operators the model's operators use, in first-use order over every subgraph:
    [(builtin name, custom code or None)], e.g. [('CONV_2D', None), ('CUSTOM', 'ethos-u')]."""
    m, names, out = _model(tflite_bytes), builtin_names(), []
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            oc = m.OperatorCodes(sg.Operators(i).OpcodeIndex())
            # schema >= 2.3 keeps codes > 127 in builtin_code, older files in deprecated_builtin_code
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            custom = oc.CustomCode().decode() if oc.CustomCode() is not None else None
            op = (names.get(code, f"BUILTIN_{code}"), custom)
            if op not in out:
                out.append(op)
    return out


def _tensor(m, sg, index):
    t = sg.Tensors(index)
    q = t.Quantization()
    scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
    zero = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
    return {"name": t.Name().decode(), "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
            "dtype": _TYPES.get(t.Type(), f"type{t.Type()}"),
            "scale": float(scale[0]) if scale is not None and len(scale) == 1 else None,
            "zero_point": int(zero[0]) if zero is not None and len(zero) == 1 else None}


def io_tensors(tflite_bytes):
    """{'inputs': [...], 'outputs': [...]} of the main subgraph: name, shape, dtype, scale, zero_point."""
    m = _model(tflite_bytes)
    sg = m.Subgraphs(0)
    return {"inputs": [_tensor(m, sg, int(i)) for i in sg.InputsAsNumpy()],
            "outputs": [_tensor(m, sg, int(i)) for i in sg.OutputsAsNumpy()]}


def _nbytes(t):
    size = {"float32": 4, "int32": 4, "int64": 8, "int16": 2, "float16": 2}.get(_TYPES.get(t.Type()), 1)
    return int(np.prod(t.ShapeAsNumpy())) * size if t.ShapeLength() else size


def _ceil(n):
    return -(-int(n) // _ALIGN) * _ALIGN


def _offline_plan(m):
    """Vela's 'OfflineMemoryAllocation' metadata: {tensor index: arena offset} (-1: TFLM plans it)."""
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if md.Name() == b"OfflineMemoryAllocation":
            raw = np.frombuffer(m.Buffers(md.Buffer()).DataAsNumpy().tobytes(), "<i4")
            return {k: int(v) for k, v in enumerate(raw[3:3 + raw[2]])}
    return {}


def vela_arena_estimate(tflite_bytes):
    """Arena estimate (bytes) for a model TFLM's host interpreter cannot run (an `ethos-u` operator).

    Head: the extent of Vela's offline plan (its scratch area, with the NPU's input/output placed
    inside it) + every other non-constant tensor with no overlap + the ethos-u kernel's two scratch
    arrays of base addresses; tail: TFLM's structs at their x86-64 sizes (24 B per TfLiteEvalTensor,
    64 B per NodeAndRegistration, 2x(64 B + quantization) for the graph's inputs/outputs, 64 B of
    op data per operator) + 1 KiB for the allocator objects (<= 800 B measured on the host).
    An upper estimate on a 32-bit MCU; NOT checked by TFLM (no host interpreter runs ethos-u)."""
    m = _model(tflite_bytes)
    sg = m.Subgraphs(0)
    plan = _offline_plan(m)
    planned, online, tensors = 0, 0, sg.TensorsLength()
    for i in range(tensors):
        t = sg.Tensors(i)
        if m.Buffers(t.Buffer()).DataLength():
            continue  # constant: stays in the flatbuffer
        if plan.get(i, -1) >= 0:
            planned = max(planned, plan[i] + _nbytes(t))
        else:
            online += _ceil(_nbytes(t))
    ops = sg.OperatorsLength()
    scratch = 0
    for i in range(ops):
        op = sg.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if oc.CustomCode() == ETHOS_U.encode():
            scratch += 2 * _ceil(8 * (op.InputsLength() + op.OutputsLength()))
    io = len(sg.InputsAsNumpy()) + len(sg.OutputsAsNumpy())
    tail = 1024 + 24 * tensors + 64 * ops + (64 + 32) * io + 64 * ops
    return {"head": _ceil(planned) + online + scratch, "tail": tail,
            "estimate": _ceil(planned) + online + scratch + tail}
