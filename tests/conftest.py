"""Shared fixtures: small real Fashion-MNIST Examples, and the PCQAT pipeline run once per runner."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from collabopt.core import data  # noqa: E402

# Small but real: enough for the baseline to learn (~70%) and for every stage to run, in ~1 min.
PIPELINE_CONFIG = {
    "data": {"train_limit": 2000, "eval_limit": 500},
    "baseline": {"epochs": 3},
    "prune": {"target_sparsity": 0.5, "epochs": 1},
    "cluster": {"number_of_clusters": 8, "epochs": 1},
    "qat": {"epochs": 1},
}


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory):
    """An Examples artifact folder (Split-train, Split-eval) of 600/200 real Fashion-MNIST images."""
    uri = str(tmp_path_factory.mktemp("examples"))
    data.write_examples(uri, data.load_fashion_mnist(train_limit=600, eval_limit=200))
    return uri


def _run_pcqat(root, runner):
    from collabopt import runners
    from collabopt.pipelines import pcqat
    pipeline_root, mlmd = runners.paths(root)
    runners.run(pcqat.create_pipeline("pcqat-test", pipeline_root, mlmd, PIPELINE_CONFIG), runner)
    return mlmd


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    return _run_pcqat(tmp_path_factory.mktemp("local"), "local")


@pytest.fixture(scope="session")
def beam_run(tmp_path_factory):
    return _run_pcqat(tmp_path_factory.mktemp("beam"), "beam")
