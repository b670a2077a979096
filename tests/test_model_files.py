"""A model brought as a tf_keras `.h5` or `.keras` file goes through the stages exactly as its SavedModel
does (issue 11): the same INT8 flatbuffer from PTQ, the same FP32 and INT8 accuracy, and a pruned
SavedModel out of the Pruner. (Files that are no usable model are refused when the config is loaded:
tests/test_bad_input_runs.py.)"""
import os

import pytest

from collabopt.core.tflite import flatbuffer
from collabopt.core.model import baseline, keras_io
from collabopt.core.evaluation import leaf_evaluation
from collabopt.core import stages
from collabopt.core.artifact_files import MODEL_DIR, TFLITE_FILE
from collabopt.tests.helpers import TINY_FIT, data_spec

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One small trained DS-CNN saved three ways: SavedModel folder, .h5 and .keras file."""
    d = tmp_path_factory.mktemp("files")
    keras_io.keras.utils.set_random_seed(0)
    model = baseline.ds_cnn(width=8, blocks=1)
    keras_io.save_model(model, str(d / "saved"))
    model.save(str(d / "model.h5"))
    model.save(str(d / "model.keras"))
    return {"saved": str(d / "saved"), "h5": str(d / "model.h5"), "keras": str(d / "model.keras")}


@pytest.fixture(scope="module")
def ptq(models, examples_uri, tmp_path_factory):
    """PTQ leaf (convert + evaluate) of each form of the model: {form: (tflite bytes, leaf)}."""
    spec, out = data_spec(examples_uri), tmp_path_factory.mktemp("ptq")
    by_form = {}
    for form, path in models.items():
        stages.to_tflite(path, spec, str(out / form / "tflite"), representative_samples=50, evaluate=False)
        leaf = leaf_evaluation.evaluate_leaf("ptq", str(out / form / "tflite"), path, spec, str(out / form / "eval"))
        with open(out / form / "tflite" / TFLITE_FILE, "rb") as f:
            by_form[form] = (f.read(), leaf)
    return by_form


@pytest.mark.parametrize("form", ["h5", "keras"])
def test_a_model_file_converts_and_evaluates_as_its_saved_model(ptq, form):
    tflite, leaf = ptq[form]
    reference, expected = ptq["saved"]
    assert flatbuffer.summarize(tflite)["layers"] == flatbuffer.summarize(reference)["layers"]
    assert (leaf["fp32_accuracy"], leaf["int8_accuracy"]) == (expected["fp32_accuracy"], expected["int8_accuracy"])
    assert leaf["eval_examples"] == expected["eval_examples"] > 0


def test_a_model_file_is_pruned_into_a_saved_model_as_its_saved_model_is(models, examples_uri, tmp_path):
    stats = {form: stages.prune(models[form], data_spec(examples_uri), str(tmp_path / form), target_sparsity=0.5,
                                schedule="constant", frequency=1, fit=stages.FitSpec(**TINY_FIT))
             for form in ("saved", "h5")}
    assert os.path.isfile(tmp_path / "h5" / MODEL_DIR / "saved_model.pb")
    assert stats["h5"]["sparsity"] == stats["saved"]["sparsity"] > 0.3
    assert stats["h5"]["accuracy"] == stats["saved"]["accuracy"]


def test_a_saved_model_is_used_in_place_and_a_file_through_a_temporary_export(models):
    with keras_io.saved_model(models["saved"]) as src:
        assert src == models["saved"]
    with keras_io.saved_model(models["keras"]) as src:
        assert os.path.isfile(os.path.join(src, "saved_model.pb"))
    assert not os.path.exists(src)  # removed with the context
