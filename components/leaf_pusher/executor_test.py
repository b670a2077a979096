"""LeafPusher executor with hand-built artifacts: an unblessed leaf is marked not pushed and nothing is
written; a blessed one lands in <destination>/<path>/<version>/ and <path>/LATEST names it."""
import filecmp
import os
import re
import shutil
import subprocess
import time

import pytest

from collabopt.components import LeafBlessing, LeafEvaluation, LeafPusher, NPUModel, TFLiteModel, keys
from collabopt.components.leaf_pusher.executor import Executor
from collabopt.core import deploy
from collabopt.core.artifact_files import write_json
from collabopt.tests.helpers import prop, artifact, channel, read_json, run_executor

PATH = "prune_ptq"


def _push(out_root, dest, blessed, tflite_uri, evaluation_uri, npu_uri=None, **overrides):
    blessing = artifact(LeafBlessing, out_root / "blessing")
    if blessed is not None:
        blessing.set_int_custom_property(keys.BLESSED, blessed)
    inputs = {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri),
              keys.EVALUATION_KEY: artifact(LeafEvaluation, evaluation_uri), keys.BLESSING_KEY: blessing}
    if npu_uri:
        inputs[keys.NPU_MODEL_KEY] = artifact(NPUModel, npu_uri)
    pusher = LeafPusher(**{k: channel(type(a)) for k, a in inputs.items()}, path=PATH, destination=str(dest))
    return run_executor(Executor(), pusher, inputs, out_root, **overrides)[keys.PUSHED_MODEL_KEY]


@pytest.mark.parametrize("blessed", [0, None])  # None: a blessing without the property
def test_unblessed_leaf_is_not_pushed(tmp_path, tflite_uri, evaluation_uri, blessed):
    destination = tmp_path / "deploy"
    pushed = _push(tmp_path, destination, blessed, tflite_uri, evaluation_uri)  # does not raise
    assert prop(pushed, keys.PUSHED) == 0
    assert prop(pushed, keys.PATH) == PATH
    assert not pushed.has_custom_property("pushed_destination") and not pushed.has_custom_property("pushed_version")
    assert not destination.exists()


def test_blessed_leaf_is_pushed_and_becomes_latest(tmp_path, tflite_uri, evaluation_uri, npu_uri):
    destination = tmp_path / "deploy"
    first = _push(tmp_path / "first", destination, 1, tflite_uri, evaluation_uri, npu_uri)
    version = prop(first, "pushed_version")
    folder = destination / PATH / version
    assert prop(first, keys.PUSHED) == 1
    assert prop(first, "pushed_destination") == str(folder)
    assert prop(first, keys.PATH) == PATH
    assert deploy.deployed_folder(destination, PATH) == str(folder)
    for where in (folder,):
        assert filecmp.cmp(where / "model.tflite", os.path.join(tflite_uri, "model.tflite"), shallow=False)
        leaf = read_json(where / "leaf.json")
        evaluated = read_json(os.path.join(evaluation_uri, "leaf.json"))
        assert leaf == {**{k: v for k, v in evaluated.items() if k != "layers"}, "version": version}
        assert filecmp.cmp(where / "npu" / "ethos-u55-128" / "model_vela.tflite",
                           os.path.join(npu_uri, "ethos-u55-128", "model_vela.tflite"), shallow=False)
    assert sorted(os.listdir(destination / PATH)) == sorted([version, deploy.LATEST])  # no .partial left
    _check_firmware(folder / deploy.FIRMWARE, tflite_uri, read_json(os.path.join(evaluation_uri, "leaf.json")), tmp_path)

    # A later push (judged against the deployed version, as LeafEvaluator judges it) is a new version
    # (versions are milliseconds), and LATEST follows it.
    judged = tmp_path / "judged"
    shutil.copytree(evaluation_uri, judged)
    write_json(judged / "leaf.json", {**read_json(judged / "leaf.json"), "previous_version": version})
    time.sleep(0.002)
    second = _push(tmp_path / "second", destination, 1, tflite_uri, str(judged))
    newer = prop(second, "pushed_version")
    assert int(newer) > int(version)
    assert sorted(os.listdir(destination / PATH)) == sorted([version, newer, deploy.LATEST])
    assert deploy.last_pushed(destination, PATH)["version"] == newer
    assert not (destination / PATH / newer / "npu").exists()  # that version, not a merge
    assert os.listdir(destination / PATH / newer / deploy.FIRMWARE) == ["cpu"]


def _check_firmware(firmware, tflite_uri, leaf, tmp_path):
    """The pushed bundles: the cpu one declares the arena the leaf recorded (TFLM-measured) and its C
    array, compiled and linked by the machine's C compiler, reads back the leaf's .tflite byte for
    byte; the Ethos-U one registers the ethos-u operator alone."""
    assert sorted(os.listdir(firmware)) == ["cpu", "ethos-u55-128"]
    cpu = firmware / "cpu"
    arena = re.search(rf"#define {PATH.upper()}_ARENA_SIZE (\d+)", (cpu / f"{PATH}_arena.h").read_text()).group(1)
    assert int(arena) == leaf["tflm_arena_bytes"] > 0
    (tmp_path / "main.c").write_text(f'''#include <stdio.h>
#include "{PATH}_model.h"
int main(int argc, char** argv) {{
  FILE* f = fopen(argv[1], "wb");
  return !f || fwrite({PATH}_model, 1, {PATH}_model_len, f) != {PATH}_model_len || fclose(f) != 0;
}}
''')
    for cmd in (["cc", "-c", "-Wall", "-Werror", str(cpu / f"{PATH}_model.c"), "-o", "model.o"],
                ["cc", "-Wall", "-Werror", "-I", str(cpu), "-o", "read_back", "main.c", "model.o"],
                ["./read_back", "out.tflite"]):
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert filecmp.cmp(tmp_path / "out.tflite", os.path.join(tflite_uri, "model.tflite"), shallow=False)
    npu = (firmware / "ethos-u55-128" / f"{PATH}_op_resolver.h").read_text()
    assert re.findall(r"resolver\.(Add\w+)\(\)", npu) == ["AddEthosU"]


def test_empty_destination_reaching_the_executor_pushes_nothing(tmp_path, tflite_uri, evaluation_uri, monkeypatch):
    """An empty destination ("" is how None travels in a spec) that reaches the executor anyway (a
    runtime parameter, an edited spec) is refused as the component refuses it, not pushed to a folder
    named 'None' in the working directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^push\.destination: "):
        _push(tmp_path, "/deploy", 1, tflite_uri, evaluation_uri, destination="")
    assert not (tmp_path / "None").exists()
