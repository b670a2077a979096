"""Deployment folders: a push switches <path>/LATEST in one step (the version holds the firmware
bundles), a push failing at any single file operation (a bundle's files too) leaves the deployed
version byte-identical, and a lost or dangling LATEST is an error,
never a first run."""
import json
import os
import re

import pytest

from collabopt.core import deploy
from collabopt.core.tfenv import tf
from collabopt.tests.helpers import tflm_child

PATH = "ptq"
# Every tf.io.gfile function a push (or its clean-up) may call; GFile's writes and closes count too.
GFILE_OPS = ("exists", "isdir", "listdir", "makedirs", "mkdir", "copy", "rename", "remove", "rmtree", "walk",
             "glob", "stat")


MODELS = ("tiny_cnn", "dense_only", "residual_add")  # leaf n's INT8 model: MODELS[n - 1]


def leaf_dirs(root, n, models, previous_version=None):
    """A leaf as the pipeline hands it to the push: converter, evaluation and NPU folders (real
    models: the push writes their firmware bundles; `models`: the firmware_models fixture)."""
    root = root / f"leaf{n}"
    (root / "npu" / "ethos-u55-128").mkdir(parents=True)
    (root / "tflite").mkdir()
    (root / "evaluation").mkdir()
    (root / "tflite" / "model.tflite").write_bytes(models[MODELS[n - 1]])
    (root / "npu" / "stats.json").write_text('{"ethos-u55-128": {}}')
    (root / "npu" / "ethos-u55-128" / "model_vela.tflite").write_bytes(models["vela"])
    leaf = {"path": PATH, "int8_accuracy": 0.5 + n / 100, "layers": [{"name": "conv"}]}
    if previous_version:
        leaf["previous_version"] = previous_version
    (root / "evaluation" / "leaf.json").write_text(json.dumps(leaf))
    return {"tflite_dir": str(root / "tflite"), "evaluation_dir": str(root / "evaluation"),
            "npu_dir": str(root / "npu")}


def push(dest, dirs):
    return deploy.push_leaf(PATH, dirs["tflite_dir"], dirs["evaluation_dir"], str(dest), npu_dir=dirs["npu_dir"])


def tree(folder):
    """{relative path: bytes} of every file (and '/' + every folder) under `folder`."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out["/" + os.path.relpath(os.path.join(root, d), folder)] = None
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return out


class Faults:
    """Counts the file operations tf.io.gfile performs; the `fail_at`-th one raises."""

    def __init__(self, monkeypatch, fail_at=None):
        self.calls, self.fail_at, self.failed = [], fail_at, None
        for name in GFILE_OPS:
            monkeypatch.setattr(tf.io.gfile, name, self._wrap(name, getattr(tf.io.gfile, name)))
        opener = tf.io.gfile.GFile
        faults = self

        class GFile:
            def __init__(self, path, mode="r"):
                faults.op(f"GFile({mode})", path)
                self._f = opener(path, mode)

            def write(self, data):
                faults.op("write", data[:20])
                return self._f.write(data)

            def read(self, *a):
                return self._f.read(*a)

            def close(self):
                faults.op("close")
                return self._f.close()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

        monkeypatch.setattr(tf.io.gfile, "GFile", GFile)

    def op(self, name, *args):
        self.calls.append((name, *args))
        if len(self.calls) == self.fail_at:
            self.failed = self.calls[-1]
            raise tf.errors.UnavailableError(None, None, f"injected fault at {name}")

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            self.op(name, *args)
            return fn(*args, **kwargs)
        return wrapped


def operations(monkeypatch, dest, dirs):
    """How many file operations a successful push of `dirs` makes (pushed into a copy of `dest`)."""
    import shutil
    trial = os.path.join(os.path.dirname(dest), "trial")
    shutil.copytree(dest, trial)
    with monkeypatch.context() as m:
        faults = Faults(m)
        push(trial, dirs)
    shutil.rmtree(trial)
    assert any(c[0] == "rename" for c in faults.calls)  # the count covers the switch
    return len(faults.calls)


def test_a_push_switches_latest_in_one_step(firmware_models, tmp_path):
    dest = tmp_path / "deployed"
    assert deploy.last_pushed(dest, PATH) is None  # nothing deployed: a first run
    v1, folder = push(dest, leaf_dirs(tmp_path, 1, firmware_models))
    assert sorted(os.listdir(dest / PATH)) == sorted([v1, deploy.LATEST])  # nothing left aside
    assert (dest / PATH / deploy.LATEST).read_text().strip() == v1
    assert deploy.deployed_folder(dest, PATH) == folder == str(dest / PATH / v1)
    assert deploy.last_pushed(dest, PATH) == {"path": PATH, "int8_accuracy": 0.51, "version": v1}  # no layers
    assert (dest / PATH / v1 / "model.tflite").read_bytes() == firmware_models["tiny_cnn"]
    assert (dest / PATH / v1 / "npu" / "ethos-u55-128" / "model_vela.tflite").read_bytes() == firmware_models["vela"]
    # The firmware bundles: the INT8 model's (cpu) with its measured arena, and the Vela model's.
    cpu, npu = dest / PATH / v1 / deploy.FIRMWARE / "cpu", dest / PATH / v1 / deploy.FIRMWARE / "ethos-u55-128"
    names = ["README.md", f"{PATH}_arena.h", f"{PATH}_model.c", f"{PATH}_model.h", f"{PATH}_op_resolver.h"]
    assert sorted(os.listdir(cpu)) == sorted(os.listdir(npu)) == names
    arena = tflm_child("arena", firmware_models["tiny_cnn"])["published"]
    assert f"#define PTQ_ARENA_SIZE {arena}\n" in (cpu / f"{PATH}_arena.h").read_text()
    assert "resolver.AddConv2D()" in (cpu / f"{PATH}_op_resolver.h").read_text()
    assert re.findall(r"resolver\.(Add\w+)\(\)", (npu / f"{PATH}_op_resolver.h").read_text()) == ["AddEthosU"]

    v2, _ = push(dest, leaf_dirs(tmp_path, 2, firmware_models, previous_version=v1))
    assert int(v2) > int(v1) and deploy.last_pushed(dest, PATH)["version"] == v2
    assert sorted(os.listdir(dest / PATH)) == sorted([v1, v2, deploy.LATEST])  # v1 kept, not deployed


def test_a_push_failing_at_any_file_operation_leaves_the_deployed_version_whole(firmware_models, tmp_path, monkeypatch):
    dest = tmp_path / "deployed"
    v1, _ = push(dest, leaf_dirs(tmp_path, 1, firmware_models))
    before, deployed = tree(dest), deploy.last_pushed(dest, PATH)
    second = leaf_dirs(tmp_path, 2, firmware_models, previous_version=v1)
    n = operations(monkeypatch, str(dest), second)
    assert n >= 10
    failed_at = set()
    for fail_at in range(1, n + 1):
        with monkeypatch.context() as m:
            faults = Faults(m, fail_at)
            with pytest.raises(tf.errors.UnavailableError, match="injected fault"):
                push(dest, second)
        failed_at.add(faults.failed)
        assert tree(dest) == before, f"after a fault at operation {fail_at} {faults.failed}"
        assert deploy.last_pushed(dest, PATH) == deployed
    assert {"makedirs", "copy", "GFile(w)", "write", "close", "rename"} <= {op for op, *_ in failed_at}
    # among them every file of the firmware bundles
    bundle_files = {os.path.basename(path) for op, *args in failed_at if op == "GFile(w)" for path in args
                    if f"/{deploy.FIRMWARE}/" in path}
    assert bundle_files == {"README.md", f"{PATH}_arena.h", f"{PATH}_model.c", f"{PATH}_model.h", f"{PATH}_op_resolver.h"}
    v2, _ = push(dest, second)  # and nothing left behind blocks the next push
    assert deploy.last_pushed(dest, PATH)["version"] == v2


def test_a_first_push_failing_at_any_file_operation_leaves_nothing_deployed(firmware_models, tmp_path, monkeypatch):
    dest = tmp_path / "deployed"
    dest.mkdir()
    first = leaf_dirs(tmp_path, 1, firmware_models)
    n = operations(monkeypatch, str(dest), first)
    for fail_at in range(1, n + 1):
        with monkeypatch.context() as m:
            faults = Faults(m, fail_at)
            with pytest.raises(tf.errors.UnavailableError):
                push(dest, first)
        assert deploy.versions(dest, PATH) == [], faults.failed
        assert deploy.last_pushed(dest, PATH) is None  # still a first run, not a lost LATEST


def test_a_lost_or_dangling_latest_is_an_error_not_a_first_run(firmware_models, tmp_path):
    dest = tmp_path / "deployed"
    v1, _ = push(dest, leaf_dirs(tmp_path, 1, firmware_models))
    pointer = dest / PATH / deploy.LATEST
    pointer.unlink()
    with pytest.raises(deploy.DeployError, match=f"holds versions \\({v1}\\) but no LATEST file"):
        deploy.last_pushed(dest, PATH)
    with pytest.raises(deploy.DeployError, match="no LATEST file"):  # and no push goes around it
        push(dest, leaf_dirs(tmp_path, 2, firmware_models))
    pointer.write_text("123\n")
    with pytest.raises(deploy.DeployError, match="names version '123'.* holds no leaf.json"):
        deploy.last_pushed(dest, PATH)
    pointer.write_text(v1 + "\n")
    assert deploy.last_pushed(dest, PATH)["version"] == v1


def test_a_leaf_deployed_already_is_not_pushed_twice(firmware_models, tmp_path):
    """A push killed after its switch but before the run recorded it executes again on the rerun
    (the leaf's evaluation, cached, was judged against the version before): nothing to do."""
    dest = tmp_path / "deployed"
    leaf = leaf_dirs(tmp_path, 1, firmware_models)
    v1, folder = push(dest, leaf)
    before = tree(dest)
    assert push(dest, leaf) == (v1, folder)
    assert tree(dest) == before


def test_a_leaf_judged_against_another_version_is_not_pushed(firmware_models, tmp_path):
    """A cached evaluation, or a concurrent run that pushed first: the deployed version is not the
    one the leaf was compared with, so pushing it would skip the not-worse comparison."""
    dest = tmp_path / "deployed"
    v1, _ = push(dest, leaf_dirs(tmp_path, 1, firmware_models))
    before = tree(dest)
    with pytest.raises(deploy.DeployError, match=f"version {v1} is deployed now, but this leaf was judged "
                                                 "against no deployed leaf"):
        push(dest, leaf_dirs(tmp_path, 2, firmware_models))
    with pytest.raises(deploy.DeployError, match="judged against version 42"):
        push(dest, leaf_dirs(tmp_path, 3, firmware_models, previous_version="42"))
    assert tree(dest) == before
