"""The wheel holds exactly the modules the development tree imports as collabopt.* (issue 10)."""
import os
import shutil
import subprocess
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_SOURCE = {"build", "runs", "dist"}  # outputs of builds and runs, never imported


def _module(rel):
    parts = rel[:-len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["collabopt", *parts])


def dev_modules():
    """Every .py under the root that imports as collabopt.*; fails on a folder of .py files without
    __init__.py (it would import as a namespace package here and be missing from the wheel)."""
    mods, orphans = set(), []
    for folder, dirs, files in os.walk(REPO):
        rel = os.path.relpath(folder, REPO)
        dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and not (rel == "." and d in NOT_SOURCE)
                   and not d.endswith(".egg-info")]
        py = [f for f in files if f.endswith(".py")]
        if rel != "." and py and "__init__.py" not in files:
            orphans.append(rel)
        mods |= {_module(os.path.normpath(os.path.join(rel, f))) for f in py if rel != "." or f != "setup.py"}
    assert not orphans, f"folders with Python files but no __init__.py: {orphans}"
    return mods


def wheel_modules(tmp_path):
    # From a copy: a stale build/ folder in the work tree would be packed again.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", *NOT_SOURCE))
    uv = shutil.which("uv") or os.path.join(REPO, ".tools", "bin", "uv")
    subprocess.run([uv, "build", "--wheel", "-o", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = [p for p in os.listdir(tmp_path / "dist") if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as z:
        return {_module(os.path.relpath(n, "collabopt")) for n in z.namelist()
                if n.startswith("collabopt/") and n.endswith(".py")}


def test_wheel_holds_exactly_the_development_modules(tmp_path):
    dev, wheel = dev_modules(), wheel_modules(tmp_path)
    assert {"collabopt.cli", "collabopt.core.stages", "collabopt.tests.helpers",
            "collabopt.components.pruner.executor"} <= dev
    assert sorted(dev - wheel) == [] and sorted(wheel - dev) == []
