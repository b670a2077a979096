"""NPUCompiler executor with a hand-built TFLiteModel: one Vela compile per target with the configured
system config and memory mode, Vela's output and numbers per target, nothing compiled for a bad
parameter."""
import json
import os

import pytest

from collabopt.components import NPUCompiler, TFLiteModel, keys
from collabopt.components.npu_compiler.executor import Executor
from collabopt.core.npu import vela
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, artifact, channel, read_json, run_executor

# Vela 5.2's system config and memory mode when none is given (from Arm's vela.ini)
VELA_DEFAULTS = {"ethos-u55-128": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
                 "ethos-u65-256": ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB")}


@pytest.fixture
def vela_runs(monkeypatch):
    """The Vela command lines the executor runs (each compile is a `vela <model.tflite> ...` process)."""
    runs, run = [], vela.subprocess.run

    def recording(cmd, *args, **kwargs):
        if cmd[0] == vela._vela_exe() and cmd[1:2] != ["--help"]:  # noqa: SLF001
            runs.append(cmd)
        return run(cmd, *args, **kwargs)
    monkeypatch.setattr(vela.subprocess, "run", recording)
    return runs


def _compile(tmp_path, tflite_uri, **params):
    npu = NPUCompiler(tflite_model=channel(TFLiteModel), **params)
    return run_executor(Executor(), npu, {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri)},
                        tmp_path)[keys.NPU_MODEL_KEY]


def _recorded_command(npu, target):
    """The Vela command line recorded in <uri>/<target>/vela_stdout.txt (its first line, `$ vela ...`)."""
    with open(os.path.join(npu.uri, target, "vela_stdout.txt")) as f:
        first = f.readline()
    assert first.startswith("$ ") and "vela" in first.split()[1]
    return first[2:].split()


def _option(command, name):
    return command[command.index(name) + 1] if name in command else None


def test_two_targets_compiled_once_each(tmp_path, tflite_uri, vela_runs):
    targets = ["ethos-u55-128", "ethos-u65-256"]
    npu = _compile(tmp_path, tflite_uri, targets=targets)
    assert [_option(cmd, "--accelerator-config") for cmd in vela_runs] == targets  # once each, in order
    assert prop(npu, "accelerator_config") == "ethos-u55-128"
    u55 = prop(npu, "ethos-u55-128.npu_cycles")
    u65 = prop(npu, "ethos-u65-256.npu_cycles")
    assert u55 == prop(npu, "npu_cycles") > 0 and u65 > 0
    assert u55 != u65  # two real compilations, not one number copied
    stats = read_json(os.path.join(npu.uri, "stats.json"))
    assert sorted(stats) == targets
    for t in targets:
        assert os.path.isfile(os.path.join(npu.uri, t, "model_vela.tflite"))
        assert prop(npu, f"{t}.npu_cycles") == stats[t]["npu_cycles"]
        assert prop(npu, f"{t}.inference_time_s") == stats[t]["inference_time_s"] > 0
        assert prop(npu, f"{t}.npu_op_pct") == 100.0  # all INT8 ops on the NPU
        # Where the time goes, per Keras layer: in stats.json and as a JSON property of the artifact.
        view = json.loads(prop(npu, f"{t}.{keys.PER_LAYER}"))
        assert view == stats[t][keys.PER_LAYER] and json.loads(prop(npu, f"{t}.{keys.CPU_OPERATORS}")) == []
        assert sum(v["cycles"] for v in view) == stats[t]["npu_cycles"]
        assert {"conv_1", "dw_1", "pw_1"} <= {v["layer"] for v in view}
        for v in view:
            # each Vela operator costs max(NPU, memory); a layer of several operators sums them
            assert max(v["npu_cycles"], v["memory_cycles"]) <= v["cycles"] <= v["npu_cycles"] + v["memory_cycles"]
            assert v["bound"] == ("memory" if v["memory_cycles"] > v["npu_cycles"] else "compute")
        pw = next(v for v in view if v["layer"] == "pw_1")
        assert pw["macs"] > 0 and 0 < pw["mac_util_pct"] <= 100 and pw["channels"] > 0
        assert pw["block_util"] == pw["channels"] / (-(-pw["channels"] // 8) * 8)
        command = _recorded_command(npu, t)
        assert _option(command, "--accelerator-config") == t
        # Not set: Vela picks its default system config and memory mode, and the numbers say which.
        assert "--system-config" not in command and "--memory-mode" not in command
        assert (prop(npu, f"{t}.system_config"),
                prop(npu, f"{t}.memory_mode")) == VELA_DEFAULTS[t]
    assert prop(npu, "ethos-u55-128.flash_bytes") > 0  # the U55 default: weights off chip


def test_configured_system_config_and_memory_mode(tmp_path, tflite_uri, vela_runs):
    # Arm's vela.ini (Vela's default config file): the U55 deep-embedded system, everything in SRAM.
    npu = _compile(tmp_path, tflite_uri, targets="ethos-u55-128", system_config="Ethos_U55_Deep_Embedded",
                   memory_mode="Sram_Only")
    assert len(vela_runs) == 1
    command = _recorded_command(npu, "ethos-u55-128")
    assert command == vela_runs[0]
    assert (_option(command, "--system-config"), _option(command, "--memory-mode")) == (
        "Ethos_U55_Deep_Embedded", "Sram_Only")
    for prefix in ("", "ethos-u55-128."):
        assert prop(npu, prefix + "system_config") == "Ethos_U55_Deep_Embedded"
        assert prop(npu, prefix + "memory_mode") == "Sram_Only"
    # What they mean: Sram_Only keeps the weights on chip (Vela moves them from SRAM to on-chip flash
    # with SRAM's characteristics), nothing off chip; the deep-embedded system clocks at 200 MHz.
    est = read_json(os.path.join(npu.uri, "stats.json"))["ethos-u55-128"]
    assert est["weights_area"] == "On-chip Flash" and est["on_chip_flash_bytes"] > 0
    assert prop(npu, "flash_bytes") == 0 and prop(npu, "dram_bytes") == 0
    assert prop(npu, "inference_time_s") == pytest.approx(
        prop(npu, "npu_cycles") / 200e6, rel=1e-3)


@pytest.mark.parametrize("bad, message", [
    ({"targets": json.dumps(["ethos-u99-1"])}, "npu.targets.0: 'ethos-u99-1' is not one of"),
    ({"targets": "[]"}, "npu.targets: [] should be non-empty"),
])
def test_bad_exec_property_compiles_nothing(tmp_path, tflite_uri, vela_runs, bad, message):
    npu = NPUCompiler(tflite_model=channel(TFLiteModel))
    with pytest.raises(ConfigError) as e:
        run_executor(Executor(), npu, {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri)}, tmp_path, **bad)
    assert str(e.value).startswith(message)
    assert vela_runs == [] and os.listdir(tmp_path / keys.NPU_MODEL_KEY) == []
