"""TFLM's interpreter in a child process: it is native code that can crash the process (a segfault
while probing small arenas was seen), and a crash must be a leaf's finding, not the end of the run.

The parent (device_check) writes the model and the first eval examples to a folder; the child
(`python -m collabopt.core.firmware.isolated FOLDER`) imports no TensorFlow, measures the arena and
runs the check, and writes result.json there."""
import json
import os
import sys

import numpy as np

MODEL, DATA, RESULT = "model.tflite", "examples.npz", "result.json"


def write_inputs(folder, tflite_bytes, features, labels, eval_metric, top_k, target):
    with open(os.path.join(folder, MODEL), "wb") as f:
        f.write(tflite_bytes)
    arrays = {f"x:{k}": v for k, v in features.items()} if isinstance(features, dict) else {"x": features}
    np.savez(os.path.join(folder, DATA), y=labels, **arrays)
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump({"eval_metric": eval_metric, "top_k": top_k, "target": target}, f)


def run(folder, timeout):
    """This module's main in a child process on `folder` (write_inputs; only MODEL: the arena alone):
    the child's result.json, or {"error"} naming how the child died."""
    import subprocess

    from collabopt.core import isolation

    done = subprocess.run([sys.executable, "-m", "collabopt.core.firmware.isolated", folder],
                          capture_output=True, text=True, timeout=timeout)
    result = os.path.join(folder, RESULT)
    if done.returncode or not os.path.exists(result):
        return {"error": isolation.crash_reason("TFLM's interpreter", done.returncode, done.stderr)}
    with open(result) as f:
        return json.load(f)


def arena(tflite_bytes, timeout=600):
    """tflm.arena(tflite_bytes), measured in a child process (its probes fork, which a process running
    TensorFlow's threads must not; a crash is an error here). RuntimeError: TFLM's reason."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="collabopt-tflm-") as folder:
        with open(os.path.join(folder, MODEL), "wb") as f:
            f.write(tflite_bytes)
        found = run(folder, timeout)
    if "error" in found:
        raise RuntimeError(found["error"])
    return found["arena"]


def main(folder):
    import types

    from collabopt.core.firmware import tflm

    with open(os.path.join(folder, MODEL), "rb") as f:
        tflite_bytes = f.read()
    try:
        found = {"arena": tflm.arena(tflite_bytes)}
        if os.path.exists(os.path.join(folder, DATA)):  # the check too
            with open(os.path.join(folder, "spec.json")) as f:
                spec = json.load(f)
            data = np.load(os.path.join(folder, DATA))
            x = data["x"] if "x" in data.files else {k[2:]: data[k] for k in data.files if k.startswith("x:")}
            found["check"] = tflm.check(tflite_bytes, [(x, data["y"])], types.SimpleNamespace(**spec), spec["target"],
                                        len(data["y"]))
    except (RuntimeError, ValueError) as e:  # TFLM's own refusal: a finding
        found = {"error": " ".join(str(e).split()) or type(e).__name__}
    with open(os.path.join(folder, RESULT), "w") as f:
        json.dump(found, f)


if __name__ == "__main__":
    main(sys.argv[1])
