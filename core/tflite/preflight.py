"""The pre-flight: the baseline converted to full INT8 once, calibrated on a handful of examples,
before any node fine-tunes. A model the converter refuses (an op TFLite cannot lower) would otherwise fail every path after minutes of fine-tuning each; here it fails the
run in seconds, with one line naming the model and the converter's first error."""
import contextlib
import logging
import os
import re
import tempfile
import time

from collabopt.core import tree_paths
from collabopt.core.model import keras_io
from collabopt.core.techniques import recurrent
from collabopt.core.tflite import convert

SAMPLES = 4  # calibration examples: enough for the converter to run, ranges do not matter here
log = logging.getLogger("collabopt")


class PreflightError(Exception):
    """The baseline cannot become a full-INT8 model: no path could. Fails the run (not one path)."""


def _skip_loc(text):
    """`text` without a leading MLIR location `loc(...)` and the ': ' after it."""
    if not text.startswith("loc("):
        return text
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
            if depth == 0:
                return text[i + 1:].lstrip(": ").strip()
    return text


_LAYER = re.compile(r'"[^"/@]+/([^"/@]+)/[^"]*@')  # "model/lstm/PartitionedCall@...": the Keras layer


def converter_reason(text):
    """The first meaningful line of a converter error: its first `error:` without the MLIR location,
    with the Keras layer the location names; else the first non-empty line."""
    for line in str(text).splitlines():
        m = re.search(r"\berror: (.*)", line)
        if m:
            message = _skip_loc(m.group(1).strip())
            layer = _LAYER.search(m.group(1))
            return f"{message} (layer {layer.group(1)!r})" if layer else message
    return next((" ".join(line.split()) for line in str(text).splitlines() if line.strip()), "")


@contextlib.contextmanager
def _native_stderr(sink):
    """The converter's C++ side prints each MLIR error to fd 2 (dozens of lines); they go to `sink`."""
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_baseline(model_path, data_spec, samples=SAMPLES):
    """Convert the model at `model_path` to full INT8 as the reference path will (PTQ, or its own QAT
    ranges), calibrated on `samples` train examples. Returns {'seconds', 'tflite_bytes'}, or None when
    the examples cannot be read (the data is not its concern); raises PreflightError with one line when
    the converter refuses the model."""
    started = time.monotonic()
    try:  # read first, outside the converter (which would call any error its refusal of the model)
        rows = list(data_spec.representative(samples)())
    except Exception as e:  # noqa: BLE001 - the first stage's input checks name what is wrong with the data
        log.warning("preflight skipped: the calibration examples could not be read (%s); the first stage "
                    "checks the data", type(e).__name__)
        return None
    # what the reference path converts: its SavedModel, its recurrent loops unrolled (stages.to_tflite)
    with tempfile.TemporaryFile(mode="w+") as sink, keras_io.saved_model(model_path) as saved, \
            recurrent.unrolled_saved_model(saved, log) as src:
        try:
            with _native_stderr(sink):
                tflite = convert.saved_model_to_int8(src, lambda: iter(rows))
        except tree_paths.RefusedError as e:
            sink.seek(0)
            log.debug("the converter's own output:\n%s", sink.read())
            raise PreflightError(f"baseline model {str(model_path)!r} cannot be converted to full INT8: "
                                 f"{converter_reason(e.__cause__ or e)}") from None
    seconds = time.monotonic() - started
    log.info("preflight: the baseline converts to full INT8 (%d bytes, %.1f s)", len(tflite), seconds)
    return {"seconds": seconds, "tflite_bytes": len(tflite)}
