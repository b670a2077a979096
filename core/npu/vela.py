"""Thin wrapper around Arm's Vela compiler (ethos-u-vela 5.2, CLI ``vela``) for Ethos-U NPUs.

Pure Python/TF-Lite (no TFX): ``check_int8`` rejects models the NPU cannot run, and
``compile_for_npu`` runs the ``vela`` CLI and turns its summary CSV into a flat, JSON-serialisable dict.
Models are read with LiteRT's interpreter (``analyze.interpreter``); no TensorFlow import.
"""
from __future__ import annotations

import csv
import functools
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from collabopt.core import tree_paths
from collabopt.core.tflite.flatbuffer import interpreter

__all__ = ["VelaError", "NotInt8Error", "check_int8", "compile_for_npu", "parse_summary",
           "valid_accelerator_configs"]

_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
NPU_CUSTOM_OP = "ethos-u"  # Vela replaces each NPU-mapped subgraph with one custom op of this name
_MAX_LISTED = 5


class VelaError(tree_paths.PathError, RuntimeError):
    """Vela is missing, failed, or did not write the outputs we expect: the path's leaf has no NPU model."""


class NotInt8Error(tree_paths.PathError, ValueError):
    """The TFLite model still has float tensors, so Vela would leave it (mostly) on the CPU: the path's
    own result, which fails that path alone (was: the whole run stopped at MobileNetV3's QAT leaf)."""


def _vela_exe() -> str:
    # Prefer the vela installed alongside the running interpreter (same venv), then PATH.
    local = Path(sys.executable).parent / "vela"
    exe = str(local) if local.is_file() else shutil.which("vela")
    if not exe:
        raise VelaError("Vela CLI not found next to %s or on PATH; pip install ethos-u-vela" % sys.executable)
    return exe


@functools.lru_cache(maxsize=None)
def valid_accelerator_configs() -> tuple[str, ...]:
    """The --accelerator-config choices of the installed vela (parsed from its --help, so never stale)."""
    out = subprocess.run([_vela_exe(), "--help"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"--accelerator-config \{([^}]*)\}", out)
    if not m:
        raise VelaError("could not read --accelerator-config choices from `vela --help`")
    return tuple(m.group(1).split(","))


def check_int8(tflite_path) -> None:
    """Raise NotInt8Error naming the first float tensors if the model is not fully INT8."""
    import numpy as np

    interp = interpreter(model_path=tflite_path)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    floats = (np.float32, np.float16, np.float64)

    def fmt(idx):
        t = tensors[idx]
        dt = np.dtype(t["dtype"]).name
        return "'%s'" % t["name"] + ("" if dt == "float32" else " (%s)" % dt)

    def is_float(idx):
        return idx in tensors and tensors[idx]["dtype"] in floats

    found, seen = [], set()

    def add(kind, idx):
        if idx not in seen:
            seen.add(idx)
            found.append("%s %s" % (kind, fmt(idx)))

    # Model I/O first: float I/O means extra QUANTIZE/DEQUANTIZE on the CPU at best.
    for d in interp.get_input_details():
        if is_float(d["index"]):
            add("input", d["index"])
    for d in interp.get_output_details():
        if is_float(d["index"]):
            add("output", d["index"])
    ops = interp._get_ops_details()  # private but stable API; the only way to see the op graph
    for op in ops:  # then float weights, the most common cause (dynamic-range / float16 quantization)
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] in _WEIGHTED_OPS and len(ins) > 1 and is_float(ins[1]):
            add(op["op_name"] + " weights", ins[1])
    for op in ops:  # then any other float activation/constant
        for idx in [*op["inputs"], *op["outputs"]]:
            if idx >= 0 and is_float(idx):
                add(op["op_name"] + " tensor", idx)
    if found:
        more = "" if len(found) <= _MAX_LISTED else " (+%d more)" % (len(found) - _MAX_LISTED)
        raise NotInt8Error(
            "NPUCompiler needs a fully INT8 TFLite model; %s has float32 tensors: %s%s. "
            "Convert with full-integer quantization (representative_dataset, TFLITE_BUILTINS_INT8, "
            "inference_input_type/inference_output_type=tf.int8)."
            % (Path(tflite_path).name, ", ".join(found[:_MAX_LISTED]), more)
        )


def _op_split(input_tflite, vela_tflite) -> tuple[int, int]:
    """(npu_ops, cpu_ops) counted over the operators of the INPUT model.

    Vela collapses every NPU-mapped region into one 'ethos-u' custom op and copies CPU-fallback ops
    through with their output tensor names intact. So an input op is a CPU op iff a non-'ethos-u' op in
    the Vela output still produces its output tensor (by name); every other input op was absorbed by
    the NPU (ops Vela optimises away, e.g. a no-op RESHAPE, count as NPU). Primary subgraph only.
    """
    def op_outputs(path):
        interp = interpreter(model_path=path)
        names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
        return [(op["op_name"], {names.get(i) for i in op["outputs"] if i >= 0}) for op in interp._get_ops_details()]

    cpu_produced = set().union(*[outs for name, outs in op_outputs(vela_tflite) if name != NPU_CUSTOM_OP])
    in_ops = op_outputs(input_tflite)
    cpu = sum(1 for _, outs in in_ops if outs & cpu_produced)
    return len(in_ops) - cpu, cpu


# Vela 5.2 writes every column for every target (stats_writer.write_summary_metrics_csv_common);
# a value can be NaN (inferences_per_second of a model with 0 cycles), never absent or empty.
_TEXT_COLUMNS = ("system_config", "memory_mode", "weights_storage_area")
_MEMORY_COLUMNS = ("sram_memory_used", "dram_memory_used", "on_chip_flash_memory_used", "off_chip_flash_memory_used")
_NUMBER_COLUMNS = ("core_clock", "cycles_total", "cycles_npu", "inference_time", "inferences_per_second",
                   "nn_macs", "total_npu_encoded_weights", "total_original_weights", *_MEMORY_COLUMNS)


def _area_key(area: str) -> str:
    """Vela's display name of a memory area -> its *_memory_used column ('Off-chip Flash' ->
    'off_chip_flash_memory_used', 'SRAM' -> 'sram_memory_used')."""
    return area.lower().replace("-", "_").replace(" ", "_") + "_memory_used"


def parse_summary(csv_path) -> dict:
    """The columns `compile_for_npu` reports from Vela's summary CSV: text columns as str, number
    columns as float (NaN where Vela wrote NaN), plus `weights_area_memory_used`, the *_memory_used
    of the area that `weights_storage_area` names. A missing column, a value that is not a number or
    an unknown weights area is a VelaError naming the column and the file: never a silent 0."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="") as f:
        row = next(csv.DictReader(f), None)
    if row is None:
        raise VelaError("Vela summary %s has no data row" % csv_path)
    missing = [k for k in (*_TEXT_COLUMNS, *_NUMBER_COLUMNS) if row.get(k) is None]
    if missing:
        raise VelaError("Vela summary %s has no column %s (it has: %s)"
                        % (csv_path, ", ".join(repr(k) for k in missing), ", ".join(row)))
    out = {k: row[k] for k in _TEXT_COLUMNS}
    for k in _NUMBER_COLUMNS:
        try:
            out[k] = float(row[k])
        except ValueError:
            raise VelaError("Vela summary %s: column %r is %r, not a number" % (csv_path, k, row[k])) from None
    area_key = _area_key(row["weights_storage_area"])
    if area_key not in _MEMORY_COLUMNS:
        raise VelaError("Vela summary %s: weights_storage_area %r names no memory area we know (%s)"
                        % (csv_path, row["weights_storage_area"], ", ".join(_MEMORY_COLUMNS)))
    out["weights_area_memory_used"] = out[area_key]
    return out


def _num(value, default=0.0) -> float:
    return default if math.isnan(value) else value


def compile_for_npu(tflite_path, output_dir, accelerator_config="ethos-u55-128",
                    system_config=None, memory_mode=None, extra_args=()) -> dict:
    """Compile an INT8 .tflite with Vela; return Vela's performance/memory estimate as a flat dict."""
    valid = valid_accelerator_configs()
    if accelerator_config not in valid:
        raise ValueError("unknown accelerator_config %r; vela accepts: %s" % (accelerator_config, ", ".join(valid)))
    model = Path(tflite_path)
    if not model.is_file():
        raise FileNotFoundError(model)
    check_int8(model)  # fail fast with a useful message instead of a 100%-CPU "success"

    out = Path(output_dir).resolve()  # absolute paths in the result survive a cwd change
    out.mkdir(parents=True, exist_ok=True)
    stem = model.stem
    # Remove Vela outputs from an earlier run so we can never report stale numbers.
    for old in [*out.glob(stem + "_summary_*.csv"), out / (stem + "_vela.tflite")]:
        old.unlink(missing_ok=True)

    cmd = [_vela_exe(), str(model), "--accelerator-config", accelerator_config, "--output-dir", str(out)]
    if system_config:
        cmd += ["--system-config", system_config]
    if memory_mode:
        cmd += ["--memory-mode", memory_mode]
    cmd += [str(a) for a in extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / "vela_stdout.txt").write_text(
        "$ %s\n%s\n--- stderr ---\n%s" % (" ".join(cmd), proc.stdout, proc.stderr))
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise VelaError("vela exited with code %d:\n%s" % (proc.returncode, tail))

    # Vela names the CSV after the *resolved* system config (a default is picked if none is given).
    csvs = ([out / ("%s_summary_%s.csv" % (stem, system_config))] if system_config
            else sorted(out.glob(stem + "_summary_*.csv")))
    optimized = out / (stem + "_vela.tflite")
    if not csvs or not csvs[0].is_file() or not optimized.is_file():
        raise VelaError("vela succeeded but did not write %s_summary_*.csv / %s in %s" % (stem, optimized.name, out))
    row = parse_summary(csvs[0])

    def kib(key):  # vela 5.2 writes *_memory_used in KiB (bytes / 1024.0); weights columns are bytes
        return int(round(_num(row[key]) * 1024))

    cycles = int(_num(row["cycles_total"]))
    clock = _num(row["core_clock"])
    t = _num(row["inference_time"], cycles / clock if clock else 0.0)
    npu_ops, cpu_ops = _op_split(model, optimized)
    vela_ops = dict(re.findall(r"^(CPU|NPU) operators = (\d+)", proc.stdout, re.M))
    return {
        "accelerator_config": accelerator_config,
        "system_config": row["system_config"],
        "memory_mode": row["memory_mode"],
        "clock_hz": clock,
        "npu_cycles": cycles,  # total estimated cycles per inference (compute + memory bound)
        "npu_compute_cycles": int(_num(row["cycles_npu"])),
        "inference_time_s": t,
        "inferences_per_s": _num(row["inferences_per_second"], 1.0 / t if t else 0.0),
        "macs": int(_num(row["nn_macs"])),
        "sram_bytes": kib("sram_memory_used"),
        "dram_bytes": kib("dram_memory_used"),
        "flash_bytes": kib("off_chip_flash_memory_used"),
        "on_chip_flash_bytes": kib("on_chip_flash_memory_used"),
        # Where the weights live (Vela's weights_storage_area): off-chip flash on the U55's default
        # system config, DRAM on the U65/U85's.
        "weights_area": row["weights_storage_area"],
        "weights_area_bytes": kib("weights_area_memory_used"),  # the whole memory area that holds the weights
        "encoded_weights_bytes": int(_num(row["total_npu_encoded_weights"])),
        # Includes weights Vela synthesises (e.g. MEAN -> depthwise kernel), so it can exceed the model's.
        "original_weights_bytes": int(_num(row["total_original_weights"])),
        "npu_ops": npu_ops,
        "cpu_ops": cpu_ops,
        "npu_op_pct": 100.0 * npu_ops / (npu_ops + cpu_ops) if npu_ops + cpu_ops else 0.0,
        # Vela's own counts are over its internal (rewritten) operators, kept for reference only.
        "vela_npu_ops": int(vela_ops.get("NPU", 0)),
        "vela_cpu_ops": int(vela_ops.get("CPU", 0)),
        "optimized_tflite": str(optimized),
        "summary_csv": str(csvs[0]),
    }
