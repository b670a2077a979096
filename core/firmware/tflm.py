"""TensorFlow Lite Micro's own interpreter on an INT8 leaf: does the device runtime load and run it,
do its answers match LiteRT's, and how large a tensor arena (RAM) does it need.

TFLM's Python interpreter (`tflite-micro` on PyPI) runs TFLM's reference kernels, one example per
invoke. A plain INT8 .tflite only: its `ethos-u` operator is a stub, so a Vela model does not run.

The arena: TFLM allocates everything at AllocateTensors (the wrapper's constructor), so the smallest
`arena_size` that constructs is the need; print_allocations() reports the same number (the guess
tried first). The published size adds TFLM's documented 16 bytes for an arena that is not 16-byte
aligned (micro_interpreter.h).
"""
import contextlib
import ctypes
import os
import re
import sys
import tempfile
import time

import numpy as np

from collabopt.core.evaluation import metrics
from collabopt.core.tflite import flatbuffer
from collabopt.schemas.defaults import DEFAULTS

ALIGNMENT = 16  # MicroArenaBufferAlignment(): every buffer and the arena start are 16-byte aligned
CHECK_EXAMPLES = DEFAULTS["tflm"]["check_examples"]  # eval examples per leaf (config: tflm.check_examples)
_MAX_ARENA = 1 << 28  # 256 MiB: no MCU model needs more; ends the search for a working size
_INTEGER = (np.int8, np.uint8, np.int16)


def interpreter(tflite_bytes, arena_size):
    """TFLM's interpreter with an arena of `arena_size` bytes; RuntimeError if the model does not fit
    or TFLM cannot load it (TFLM prints why on stderr: silenced here)."""
    from tflite_micro import runtime  # lazy: only the leaf evaluation and the push need it
    with _captured_fd2():
        return runtime.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=int(arena_size))


@contextlib.contextmanager
def _captured_fd2():
    """What is written to file descriptor 2 inside the block (TFLM prints with fprintf(stderr), not
    through sys.stderr): yields a callable returning the text so far."""
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as f:
        libc.fflush(None)
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)

        def text():
            libc.fflush(None)
            f.seek(0)
            return f.read().decode(errors="replace")
        try:
            yield text
        finally:
            libc.fflush(None)
            os.dup2(saved, 2)
            os.close(saved)


# ------------------------------------------------------------------------------------------- arena

_LINE = re.compile(r"\[RecordingMicroAllocator\] (?:Arena allocation (\w+) (\d+) bytes|"
                   r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) )")


def parse_allocations(text):
    """print_allocations() text -> {'total'|'head'|'tail': bytes, '<section>': {used, requested, count}}."""
    out = {}
    for m in _LINE.finditer(text):
        if m.group(1):
            out[m.group(1)] = int(m.group(2))
        else:
            out[m.group(3)] = {"used": int(m.group(4)), "requested": int(m.group(5)), "count": int(m.group(6))}
    return out


def allocations(it):
    """The RecordingMicroAllocator's report of a TFLM interpreter, parsed (parse_allocations)."""
    with _captured_fd2() as text:
        it.print_allocations()
        report = text()
    parsed = parse_allocations(report)
    if "total" not in parsed:
        raise RuntimeError(f"print_allocations() printed no arena total: {report[:300]!r}")
    return parsed


def fits(tflite_bytes, size):
    """Does TFLM's interpreter construct (allocate every tensor) with an arena of `size` bytes? Tried in
    a forked child: on some arenas just too small TFLM segfaults instead of refusing (seen on the
    autoencoder's leaves), and that is a "no", not the end of the arena search. A forked copy of a
    process running TensorFlow's (or Beam's) threads can deadlock on a lock one of them held, so this
    refuses to fork there: call it from a process without TensorFlow (core/firmware/isolated.py)."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("tflm.fits forks a child: call it from a process without TensorFlow "
                           "(core/firmware/isolated.py), a fork of TensorFlow's threads can hang")
    pid = os.fork()
    if pid == 0:  # the child: construct, answer by exit code, never return into the caller's stack
        code = 1
        try:
            interpreter(tflite_bytes, size)
            code = 0
        except BaseException:  # noqa: BLE001 - any refusal is "does not fit"
            pass
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _working_size(tflite_bytes):
    size = max(1 << 16, 10 * len(tflite_bytes))  # the wrapper's own default is 10x the model
    while not fits(tflite_bytes, size):
        size *= 4
        if size > _MAX_ARENA:
            interpreter(tflite_bytes, _MAX_ARENA)  # raises TFLM's own error (an unsupported operator?)
    return size


def _ceil(n, step=ALIGNMENT):
    return -(-int(n) // step) * step


def minimal_arena(tflite_bytes, hi=None, step=ALIGNMENT, lo=0):
    """The smallest multiple of `step` bytes TFLM's interpreter constructs with: a binary search
    (too small raises RuntimeError); `hi` a size known to fit, `lo` one known not to (TFLM has crashed
    on arenas far below what a model needs, so arena() starts at half of its recorded total)."""
    lo, hi = lo // step, _ceil(hi or _working_size(tflite_bytes), step) // step
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(tflite_bytes, mid * step) else (mid, hi)
    return hi * step


def arena(tflite_bytes):
    """The tensor arena of an INT8 .tflite on TFLM (x86-64 host, reference kernels): {'recorded':
    print_allocations' total, 'minimal': the smallest 16-byte multiple that constructs, 'published':
    minimal + 16 (an arena not 16-byte aligned), 'head', 'tail'}. RuntimeError if TFLM cannot load it."""
    size = _working_size(tflite_bytes)
    rec = allocations(interpreter(tflite_bytes, size))
    guess = _ceil(rec["total"])
    sharp = fits(tflite_bytes, guess) and not fits(tflite_bytes, guess - ALIGNMENT)
    need = guess if sharp else minimal_arena(tflite_bytes, hi=size, lo=_ceil(rec["total"] // 2))
    return {"recorded": rec["total"], "minimal": need, "published": need + ALIGNMENT,
            "head": rec.get("head"), "tail": rec.get("tail")}


# ----------------------------------------------------------------------------------------- answers

def quantized_feeds(lite, x):
    """x (float: an array for a one-input model, or {input name: array}) as the integer input
    tensors, one array per model input in the model's input order (the order TFLM's set_input uses)."""
    details = lite.get_input_details()
    if not isinstance(x, dict):
        if len(details) != 1:
            raise ValueError(f"the model has {len(details)} inputs: pass {{input name: array}}")
        return [flatbuffer.quantized(x, details[0])]
    by_index = {d["index"]: name for name, d in lite.get_signature_runner().get_input_details().items()}
    missing = sorted(set(by_index.values()) - set(x))
    if missing:
        raise ValueError(f"no feature for the model's input(s) {', '.join(missing)}")
    return [flatbuffer.quantized(x[by_index[d["index"]]], d) for d in details]


def litert_outputs(lite, feeds):
    """LiteRT's raw (integer) outputs for the quantized feeds: one (N, ...) array per output."""
    ins = lite.get_input_details()
    for d, f in zip(ins, feeds):
        lite.resize_tensor_input(d["index"], [len(f), *d["shape"][1:]])
    lite.allocate_tensors()
    for d, f in zip(ins, feeds):
        lite.set_tensor(d["index"], f)
    lite.invoke()
    return [lite.get_tensor(d["index"]).copy() for d in lite.get_output_details()]


def tflm_outputs(it, feeds, n_outputs=1):
    """TFLM's raw outputs for the quantized feeds, one example per invoke: one (N, ...) array per output."""
    parts = [[] for _ in range(n_outputs)]
    for i in range(len(feeds[0])):
        for k, f in enumerate(feeds):
            it.set_input(f[i:i + 1], k)
        it.invoke()
        for k, p in enumerate(parts):
            p.append(np.array(it.get_output(k)))
    return [np.concatenate(p) for p in parts]


def dequantized(raw, detail):
    scale, zero = detail["quantization"]
    raw = raw.astype(np.float32)
    return (raw - zero) * scale if scale else raw


def _max_lsb(a, b):
    """Per example: the largest |a - b| over every output element, in LSBs."""
    n = len(a[0])
    diffs = [np.abs(x.astype(np.int64) - y.astype(np.int64)).reshape(n, -1).max(axis=1) for x, y in zip(a, b)]
    return np.max(np.stack(diffs), axis=0)


def _metric(name, sums):
    try:
        return metrics.value(name, sums)
    except metrics.MetricError:  # e.g. an AUC over examples of one label only
        return None


def check(tflite_bytes, batches, spec, target=metrics.LABEL, max_examples=CHECK_EXAMPLES):
    """TFLM against LiteRT on the same quantized inputs of the first `max_examples` examples of
    `batches` ((features, labels) NumPy batches); INT8 outputs. `spec`: anything with eval_metric,
    top_k (train.TrainingSpec). RuntimeError when TFLM cannot load or run the model.

    Returns {tflm_examples, tflm_max_lsb, tflm_lsb_counts {max diff: examples}, tflm_top1_differ,
    tflm_top1_differ_rate, tflm_metric, tflm_litert_metric (the eval metric on the same examples; None
    where it cannot be computed from so few), tflm_seconds (wall time of TFLM's invokes)}."""
    lite = flatbuffer.interpreter(tflite_bytes)
    outs = lite.get_output_details()
    if any(d["dtype"] not in _INTEGER for d in outs):
        raise ValueError("the TFLM check compares integer outputs (INT8 leaves); this model has a float output")
    it = interpreter(tflite_bytes, _working_size(tflite_bytes))
    name = spec.eval_metric
    sums = {"tflm": metrics.zeros(name), "litert": metrics.zeros(name)}
    lsb, differ, seconds, n = [], 0, 0.0, 0
    for features, labels in batches:
        take = max_examples - n
        if take <= 0:
            break
        features = {k: v[:take] for k, v in features.items()} if isinstance(features, dict) else features[:take]
        labels = labels[:take]
        feeds = quantized_feeds(lite, features)
        ref = litert_outputs(lite, feeds)
        start = time.perf_counter()
        got = tflm_outputs(it, feeds, len(outs))
        seconds += time.perf_counter() - start
        lsb.append(_max_lsb(got, ref))
        answers = {"tflm": dequantized(got[0], outs[0]), "litert": dequantized(ref[0], outs[0])}
        for key, out in answers.items():
            sums[key] += metrics.summary(spec, out, features, labels, target)
        rows = {k: v.reshape(len(v), -1) for k, v in answers.items()}
        differ += int(np.sum(metrics.predicted(rows["tflm"]) != metrics.predicted(rows["litert"])))
        n += len(feeds[0])
    if not n:
        raise ValueError("the TFLM check got no examples")
    lsb = np.concatenate(lsb)
    values, counts = np.unique(lsb, return_counts=True)
    return {"tflm_examples": n, "tflm_max_lsb": int(lsb.max()),
            "tflm_lsb_counts": {str(int(v)): int(c) for v, c in zip(values, counts)},
            "tflm_top1_differ": differ, "tflm_top1_differ_rate": differ / n,
            "tflm_metric": _metric(name, sums["tflm"]),
            "tflm_litert_metric": _metric(name, sums["litert"]), "tflm_seconds": seconds}
