import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json
import re

import numpy as np
import pytest

from collabopt.core.vela import NotInt8Error, VelaError, check_int8, compile_for_npu


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
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random((1, 28, 28, 1), np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (d / "tiny_int8.tflite").write_bytes(conv.convert())
    return {"f32": d / "tiny_f32.tflite", "int8": d / "tiny_int8.tflite"}


def _op_names(path):
    import tensorflow as tf

    return [o["op_name"] for o in tf.lite.Interpreter(model_path=str(path))._get_ops_details()]


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
