import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import csv
import json
import math
import re

import numpy as np
import pytest

from collabopt.core.tflite import convert
from collabopt.core.tflite.flatbuffer import interpreter
from collabopt.core.tree_paths import PathError
from collabopt.core.npu.vela import NotInt8Error, VelaError, check_int8, compile_for_npu, parse_summary


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A tiny CNN (Conv2D + DepthwiseConv2D + Dense) as float32 and full-INT8 .tflite files."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.layers.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    d = tmp_path_factory.mktemp("models")
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    (d / "tiny_f32.tflite").write_bytes(conv.convert())
    x = np.random.default_rng(0).random((8, 28, 28, 1), np.float32)
    (d / "tiny_int8.tflite").write_bytes(convert.to_int8(m, convert.representative(x)))
    return {"f32": d / "tiny_f32.tflite", "int8": d / "tiny_int8.tflite"}


def _op_names(path):
    return [o["op_name"] for o in interpreter(model_path=path)._get_ops_details()]


def test_compile_u55_128(models, tmp_path):
    check_int8(models["int8"])  # no exception
    r = compile_for_npu(models["int8"], tmp_path)
    json.dumps(r)  # must be JSON-serialisable as-is

    assert r["accelerator_config"] == "ethos-u55-128"
    assert r["system_config"] == "Ethos_U55_High_End_Embedded"  # vela's default for U55
    assert r["npu_cycles"] > 1000 and r["npu_compute_cycles"] <= r["npu_cycles"]
    assert r["inference_time_s"] == pytest.approx(r["npu_cycles"] / r["clock_hz"], rel=1e-3)
    assert r["inferences_per_s"] == pytest.approx(1 / r["inference_time_s"], rel=1e-3)
    # conv: 26*26*1*9*8, depthwise: 24*24*9*8 MACs (+ mean + dense)
    assert r["macs"] >= 26 * 26 * 9 * 8 + 24 * 24 * 9 * 8
    assert 0 < r["encoded_weights_bytes"] and r["original_weights_bytes"] > 0
    # Both 26x26x8 and 24x24x8 int8 feature maps must fit in SRAM at some point.
    assert r["sram_bytes"] >= 26 * 26 * 8 + 24 * 24 * 8
    assert r["flash_bytes"] > 0  # Shared_Sram mode keeps weights in off-chip flash
    assert (r["weights_area"], r["weights_area_bytes"]) == ("Off-chip Flash", r["flash_bytes"])

    # KiB -> bytes conversion agrees with vela's printed summary.
    log = (tmp_path / "vela_stdout.txt").read_text()
    kib = float(re.search(r"Total SRAM used\s+([\d.]+) KiB", log).group(1))
    assert r["sram_bytes"] / 1024 == pytest.approx(kib, abs=0.01)

    assert (r["npu_ops"], r["cpu_ops"], r["npu_op_pct"]) == (4, 0, 100.0)
    assert os.path.isfile(r["optimized_tflite"]) and r["optimized_tflite"].endswith("tiny_int8_vela.tflite")
    assert _op_names(r["optimized_tflite"]) == ["ethos-u"]
    assert os.path.basename(r["summary_csv"]) == "tiny_int8_summary_Ethos_U55_High_End_Embedded.csv"


def test_cpu_fallback_counts_original_ops(models, tmp_path):
    # Forcing FULLY_CONNECTED onto the CPU: 3 of the 4 input operators remain on the NPU.
    r = compile_for_npu(models["int8"], tmp_path, extra_args=("--ignore-ops", "FULLY_CONNECTED"))
    assert (r["npu_ops"], r["cpu_ops"]) == (3, 1)
    assert r["npu_op_pct"] == pytest.approx(75.0)
    assert _op_names(r["optimized_tflite"]) == ["ethos-u", "FULLY_CONNECTED"]


def test_float_model_rejected(models, tmp_path):
    with pytest.raises(NotInt8Error) as e:
        compile_for_npu(models["f32"], tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith("NPUCompiler needs a fully INT8 TFLite model; tiny_f32.tflite has float32 tensors: ")
    assert "input 'serving_default_image:0'" in msg
    assert re.search(r"CONV_2D weights '[^']*conv2d", msg)
    assert not (tmp_path / "out").exists()  # rejected before vela ran
    assert isinstance(e.value, PathError)  # fails its path alone, the tree goes on


def test_unknown_accelerator(models, tmp_path):
    with pytest.raises(ValueError) as e:
        compile_for_npu(models["int8"], tmp_path, accelerator_config="ethos-u99-7")
    msg = str(e.value)
    assert "ethos-u99-7" in msg
    for cfg in ("ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u85-256"):
        assert cfg in msg


@pytest.mark.parametrize("accel, sys_cfg", [
    ("ethos-u55-256", "Ethos_U55_High_End_Embedded"),
    ("ethos-u65-256", "Ethos_U65_Client_Server"),
    ("ethos-u85-256", "Ethos_U85_SYS_DRAM_Mid"),
])
def test_other_accelerators(models, tmp_path, accel, sys_cfg):
    r = compile_for_npu(models["int8"], tmp_path, accelerator_config=accel)
    assert r["accelerator_config"] == accel and r["system_config"] == sys_cfg
    assert r["npu_cycles"] > 1000 and r["inference_time_s"] > 0 and r["encoded_weights_bytes"] > 0
    assert r["npu_op_pct"] == 100.0 and os.path.isfile(r["optimized_tflite"])
    if accel != "ethos-u55-256":  # these default system configs keep weights in DRAM, not flash
        assert r["dram_bytes"] > 0 and r["flash_bytes"] == 0
        assert (r["weights_area"], r["weights_area_bytes"]) == ("DRAM", r["dram_bytes"])
    else:
        assert (r["weights_area"], r["weights_area_bytes"]) == ("Off-chip Flash", r["flash_bytes"])


def test_explicit_system_config_and_errors(models, tmp_path):
    r = compile_for_npu(models["int8"], tmp_path, "ethos-u65-256",
                        system_config="Ethos_U65_High_End", memory_mode="Dedicated_Sram")
    assert (r["system_config"], r["memory_mode"]) == ("Ethos_U65_High_End", "Dedicated_Sram")
    assert r["summary_csv"].endswith("tiny_int8_summary_Ethos_U65_High_End.csv")
    with pytest.raises(VelaError, match="System_Config.Nope"):
        compile_for_npu(models["int8"], tmp_path, system_config="Nope")


@pytest.fixture(scope="module")
def u55(models, tmp_path_factory):
    """compile_for_npu's result on the tiny INT8 model, with the summary CSV Vela wrote."""
    return compile_for_npu(models["int8"], tmp_path_factory.mktemp("u55"))


def _edited_summary(src, dst, rename=None, values=None):
    """A copy of Vela's summary CSV with header `rename`d ({old: new}) and/or cells replaced."""
    with open(src, newline="") as f:
        header, row = list(csv.reader(f))[:2]
    for k, v in (values or {}).items():
        row[header.index(k)] = v
    header = [(rename or {}).get(k, k) for k in header]
    with open(dst, "w", newline="") as f:
        csv.writer(f).writerows([header, row])
    return dst


def test_parse_summary_of_real_csv(u55):
    row = parse_summary(u55["summary_csv"])
    assert int(row["cycles_total"]) == u55["npu_cycles"] and row["core_clock"] == u55["clock_hz"]
    assert row["weights_storage_area"] == "Off-chip Flash"
    assert row["weights_area_memory_used"] == row["off_chip_flash_memory_used"] > 0


@pytest.mark.parametrize("column", ["cycles_total", "inference_time", "nn_macs", "sram_memory_used",
                                    "total_npu_encoded_weights", "weights_storage_area", "system_config"])
def test_parse_summary_missing_column_is_an_error(u55, tmp_path, column):
    # Before: a renamed column read as 0 (npu_cycles=0, macs=0, ...) and the run reported it.
    bad = _edited_summary(u55["summary_csv"], tmp_path / "renamed_summary.csv", rename={column: column + "_v6"})
    with pytest.raises(VelaError) as e:
        parse_summary(bad)
    assert repr(column) in str(e.value) and "renamed_summary.csv" in str(e.value)


def test_parse_summary_bad_values(u55, tmp_path):
    bad = _edited_summary(u55["summary_csv"], tmp_path / "text_summary.csv", values={"cycles_npu": "n/a"})
    with pytest.raises(VelaError, match=r"text_summary.csv: column 'cycles_npu' is 'n/a', not a number"):
        parse_summary(bad)
    bad = _edited_summary(u55["summary_csv"], tmp_path / "area_summary.csv", values={"weights_storage_area": "Tape"})
    with pytest.raises(VelaError, match=r"area_summary.csv: weights_storage_area 'Tape' names no memory area"):
        parse_summary(bad)
    (tmp_path / "empty_summary.csv").write_text("cycles_total,core_clock\n")
    with pytest.raises(VelaError, match="empty_summary.csv has no data row"):
        parse_summary(tmp_path / "empty_summary.csv")


def test_parse_summary_nan_stays_a_value(u55, tmp_path):
    # Vela writes inferences_per_second = nan for a model of 0 cycles: a value, not a missing column.
    ok = _edited_summary(u55["summary_csv"], tmp_path / "nan_summary.csv",
                         values={"inferences_per_second": "nan", "weights_storage_area": "SRAM"})
    row = parse_summary(ok)
    assert math.isnan(row["inferences_per_second"])
    assert row["weights_area_memory_used"] == row["sram_memory_used"] > 0
