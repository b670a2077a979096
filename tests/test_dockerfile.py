"""The component image without building it (no Docker engine here): the Dockerfile's base, entrypoint
(the one compiled specs run), environment and layers, and its pins against pyproject.toml and uv.lock."""
import json
import os
import re
import shlex
import tomllib

from collabopt import __version__
from collabopt.kubeflow import compiler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCKED = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tfx", "ml-pipelines-sdk", "ml-metadata",
          "ethos-u-vela", "kfp", "kfp-pipeline-spec", "apache-beam")


def _dockerfile():
    """[(INSTRUCTION, argument)] with continuation lines joined and comments dropped."""
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", "\n".join(l for l in f.read().splitlines() if not l.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def _lock_versions():
    with open(os.path.join(REPO, "uv.lock"), "rb") as f:
        lock = tomllib.load(f)
    return {p["name"]: p["version"] for p in lock["package"]}, lock


def _pins(requirements):
    out = {}
    for req in requirements:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^;\s]+)", req)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def test_dockerfile_base_entrypoint_and_pins_agree_with_the_lock():
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kdr

    steps = _dockerfile()
    base = dict(steps)["FROM"].split()[-1]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm", base), base  # Debian 12: glibc 2.36
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry == list(compiler.ENTRYPOINT) == list(kdr.KUBEFLOW_TFX_CMD)  # what compiled specs run
    env = {}
    for kind, arg in steps:
        if kind == "ENV":
            env.update(dict(tok.split("=", 1) for tok in shlex.split(arg)))
    assert env["TF_USE_LEGACY_KERAS"] == "1" and env["PATH"].startswith(env["UV_PROJECT_ENVIRONMENT"] + "/bin:")
    runs = [arg for kind, arg in steps if kind == "RUN"]
    syncs = [r for r in runs if "uv sync --locked" in r]
    assert len(syncs) == 2 and "--no-install-project" in syncs[0] and "--no-editable" in syncs[1]
    assert any("vela --version" in r and "kubeflow_v2_run_executor" in r for r in runs)
    assert "dataset-fashion-mnist" in " ".join(runs)
    # Dependencies from the lock alone first (a cached layer), then the project itself.
    at = {step: i for i, step in enumerate(steps)}
    copy_lock, copy_all = at[("COPY", "pyproject.toml uv.lock ./")], at[("COPY", ". .")]
    assert copy_lock < at[("RUN", syncs[0])] < copy_all < at[("RUN", syncs[1])]
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    assert args["VERSION"] == pyproject["project"]["version"] == __version__  # image tag collabopt:<version>
    assert compiler.default_image() == f"collabopt:{__version__}"
    with open(os.path.join(REPO, "Makefile")) as f:
        makefile = f.read()
    assert f"uv=={args['UV_VERSION']}" in makefile and "-t collabopt:$$(" in makefile
    # The pins, the overrides and the lock agree (the image installs the lock: uv sync --locked).
    locked, lock = _lock_versions()
    pins = _pins(pyproject["project"]["dependencies"])
    overrides = _pins(pyproject["tool"]["uv"]["override-dependencies"])
    for name in LOCKED:
        assert locked[name] == pins[name], (name, pins[name], locked[name])
    assert overrides["ml-metadata"] == pins["ml-metadata"] == locked["ml-metadata"] == "1.17.1"
    assert {o["name"]: o.get("specifier") for o in lock["manifest"]["overrides"]}["ml-metadata"] == "==1.17.1"
    assert "tensorflow-data-validation" not in locked  # needs glibc 2.38: dropped by the lock
