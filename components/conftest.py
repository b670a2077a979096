"""Fixtures of the components' own tests: small real data and hand-built upstream artifacts, made
once per session with collabopt.core (never with the executor under test)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from collabopt.core.evaluation import leaf_evaluation  # noqa: E402
from collabopt.core import stages
from collabopt.tests.helpers import data_spec, fashion_mnist_examples, sparse_model, tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory):
    """An Examples artifact folder (Split-train, Split-eval) of 300/100 real Fashion-MNIST images."""
    return fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=300, eval_limit=100)


@pytest.fixture(scope="session")
def model_uri(tmp_path_factory):
    """A user's Model artifact: a tiny untrained DS-CNN SavedModel under Format-Serving/, with no
    kernels.npz or stats.json (a model from outside collabopt). Tests must not write into it."""
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def tflite_uri(tmp_path_factory, model_uri, examples_uri):
    """A TFLiteModel artifact folder (PTQ of model_uri): model.tflite, stats.json, kernels.npz."""
    uri = str(tmp_path_factory.mktemp("tflite"))
    stages.to_tflite(model_uri, data_spec(examples_uri), uri, representative_samples=50)
    return uri


@pytest.fixture(scope="session")
def npu_uri(tmp_path_factory, tflite_uri):
    """An NPUModel artifact folder: tflite_uri compiled by Vela for ethos-u55-128."""
    uri = str(tmp_path_factory.mktemp("npu"))
    stages.compile_npu(os.path.join(tflite_uri, "model.tflite"), uri, accelerator_configs=["ethos-u55-128"])
    return uri


@pytest.fixture(scope="session")
def evaluation_uri(tmp_path_factory, tflite_uri, model_uri, examples_uri, npu_uri):
    """A LeafEvaluation artifact folder of the ptq leaf (leaf.json, kernels.npz), blessed."""
    uri = str(tmp_path_factory.mktemp("evaluation"))
    leaf = leaf_evaluation.evaluate_leaf("ptq", tflite_uri, model_uri, data_spec(examples_uri), uri, npu_dir=npu_uri)
    assert leaf["blessed"], leaf["reasons"]
    return uri


@pytest.fixture(scope="session")
def sparse_model_uri(tmp_path_factory, model_uri):
    """What a Pruner hands on, built by hand: model_uri with the smaller half of every Conv2D/Dense
    kernel set to zero, and a stats.json promising target_sparsity 0.5 (no kernels.npz)."""
    return sparse_model(tmp_path_factory.mktemp("sparse_model"), model_uri, 0.5)
