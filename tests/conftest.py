"""Shared fixtures: small real Fashion-MNIST Examples, and deployment-tree pipeline runs (once each)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from collabopt.core.data import examples_io  # noqa: E402
from collabopt.tests.helpers import PCQAT_CONFIG, TREE_CONFIG, run_tree  # noqa: E402


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory):
    """An Examples artifact folder (Split-train, Split-eval) of 600/200 real Fashion-MNIST images."""
    uri = str(tmp_path_factory.mktemp("examples"))
    examples_io.write_examples(uri, examples_io.load_fashion_mnist(train_limit=600, eval_limit=200))
    return uri


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """paths: all under LocalDagRunner (8 leaves, loose requirements)."""
    return run_tree(tmp_path_factory.mktemp("local"), TREE_CONFIG)


@pytest.fixture(scope="session")
def beam_run(tmp_path_factory):
    return run_tree(tmp_path_factory.mktemp("beam"), PCQAT_CONFIG, "beam")


def pytest_collection_modifyitems(config, items):
    """For `pytest -n 2 --dist loadgroup` (make test): a module's tests run on one worker, so its module
    fixtures are built once, and every module reading the session's `local_run` tree (minutes to
    build) runs on the same worker."""
    modules = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    for module, its in modules.items():
        shared = any("local_run" in getattr(i, "fixturenames", ()) for i in its)
        for item in its:
            item.add_marker(pytest.mark.xdist_group("local_run" if shared else module))
