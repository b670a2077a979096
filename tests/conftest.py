"""Shared fixtures: small real Fashion-MNIST Examples, and deployment-tree pipeline runs (once each)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from collabopt.core import data  # noqa: E402

# Small but real: enough for the baseline to learn (~70%) and for every stage to run.
TREE_CONFIG = {
    "name": "tree-test",
    "paths": "all",
    "data": {"train_limit": 2000, "eval_limit": 500},
    "baseline": {"epochs": 3},
    "prune": {"target_sparsity": 0.5, "epochs": 1},
    "cluster": {"number_of_clusters": 8, "epochs": 1},
    "qat": {"epochs": 1},
    "requirements": {"max_int8_accuracy_drop_pp": 30.0},  # loose: blesses
    "npu": {"targets": ["ethos-u55-128", "ethos-u65-256"]},
}
# The PCQAT path alone (and its PTQ reference), for the Beam runner.
PCQAT_CONFIG = {**TREE_CONFIG, "name": "pcqat-test", "paths": ["prune_cluster_pcqat"],
                "npu": {"targets": ["ethos-u55-128"]}}


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory):
    """An Examples artifact folder (Split-train, Split-eval) of 600/200 real Fashion-MNIST images."""
    uri = str(tmp_path_factory.mktemp("examples"))
    data.write_examples(uri, data.load_fashion_mnist(train_limit=600, eval_limit=200))
    return uri


def run_tree(root, config, runner="local"):
    from collabopt import runners
    from collabopt.pipelines import tree
    pipeline_root, mlmd = runners.paths(root)
    runners.run(tree.create_pipeline(config, pipeline_root, mlmd), runner)
    return mlmd


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """paths: all under LocalDagRunner (8 leaves, loose requirements)."""
    return run_tree(tmp_path_factory.mktemp("local"), TREE_CONFIG)


@pytest.fixture(scope="session")
def beam_run(tmp_path_factory):
    return run_tree(tmp_path_factory.mktemp("beam"), PCQAT_CONFIG, "beam")
