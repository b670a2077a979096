"""Shared fixtures: small real Fashion-MNIST Examples, and deployment-tree pipeline runs (once each)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from collabopt.core.data import examples_io  # noqa: E402
from collabopt.tests.helpers import TREE_CONFIG, run_tree  # noqa: E402


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory):
    """An Examples artifact folder (Split-train, Split-eval) of 600/200 real Fashion-MNIST images."""
    uri = str(tmp_path_factory.mktemp("examples"))
    examples_io.write_examples(uri, examples_io.load_fashion_mnist(train_limit=600, eval_limit=200))
    return uri


def once_per_machine(tmp_path_factory, name, build):
    """A session fixture's folder built once for all xdist workers of this pytest run (they share the
    parent of their base temp): the first to ask builds it under a file lock, the others wait, then
    read it. `build(folder)` returns what the fixture returns (JSON: a path)."""
    import fcntl
    import json

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / f"{name}.json"
        if not done.exists():
            done.write_text(json.dumps(build(shared / name)))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """paths: all under LocalDagRunner (8 leaves, loose requirements), built once per test run."""
    return once_per_machine(tmp_path_factory, "local", lambda d: run_tree(d, TREE_CONFIG))


@pytest.fixture(scope="session")
def firmware_data():
    from collabopt.tests import firmware_models
    return firmware_models.eval_data()


@pytest.fixture(scope="session")
def firmware_models(firmware_data):
    """{name: INT8 .tflite bytes} (tests/firmware_models.py) and 'vela': the DS-CNN compiled by Vela."""
    from collabopt.tests import firmware_models as fm
    import tempfile
    found = fm.int8_models(firmware_data[0])
    with tempfile.TemporaryDirectory() as tmp:
        found["vela"] = fm.vela_model(found["ds_cnn"], tmp)
    return found


# The heaviest files first (minutes each; `--durations`): xdist (`--dist loadfile
# --no-loadscope-reorder`, Makefile) hands out whole files in this order, so the long ones start at once
# on the workers instead of leaving one worker alone at the end. The tree (local_run) and the KFP
# emulator start first, on different workers; the files that read local_run come after it is built.
HEAVY_FIRST = ("tests/test_tree.py", "tests/test_kfp_emulator.py", "tests/test_search.py", "tests/test_resume.py",
               "tests/test_user_models.py", "tests/test_bad_input_runs.py", "tests/test_mlperf_tiny_models.py",
               "tests/test_recurrent.py", "tests/test_pipeline.py", "tests/test_bad_input_matrix.py",
               "tests/test_search_metric.py", "tests/test_failed_paths.py", "tests/test_search_estimates.py",
               "tests/test_retraining.py", "tests/test_thin_tree.py", "tests/test_thin.py", "tests/test_runs.py")


def pytest_collection_modifyitems(config, items):
    rank = {f: i for i, f in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest as collected
