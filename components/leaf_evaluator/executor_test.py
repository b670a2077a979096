"""LeafEvaluator executor (Beam) with hand-built artifacts: accuracies over the eval split with the
executor's Beam pipeline, the NPUModel's numbers judged (no Vela run here), the gates against a
baseline leaf and the requirements, and bad requirements failing before any evaluation."""
import json
import os
import tempfile

import pytest
from tfx.types import standard_artifacts

from collabopt.components import LeafEvaluation, LeafEvaluator, NPUModel, TFLiteModel, keys
from collabopt.components.leaf_evaluator.executor import Executor
from collabopt.core.firmware import tflm
from collabopt.core.tflite import flatbuffer
from collabopt.core.data import examples_io
from collabopt.core.model import keras_io, train
from collabopt.core.npu import vela
from collabopt.core.artifact_files import write_json
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import (prop, TINY_DATA, artifact, beam_executor, channel, examples_artifact, failed_artifact,
                                     failure_of, read_json, run_executor, tflm_child)

TARGET = "ethos-u55-128"  # what the npu_uri fixture compiled for
CHECKED = 40  # tflm.check_examples: not the default, so the parameter is seen to reach TFLM


@pytest.fixture
def no_vela(monkeypatch):
    """Fail the test if anything compiles with Vela."""
    def compile_for_npu(*args, **kwargs):
        raise AssertionError("LeafEvaluator ran Vela; it must judge the NPUModel's numbers")
    monkeypatch.setattr(vela, "compile_for_npu", compile_for_npu)


def _evaluate(tmp_path, inputs, made=None, **params):
    evaluator = LeafEvaluator(**{k: channel(type(a)) for k, a in inputs.items()}, path="ptq", **TINY_DATA, **params)
    return run_executor(beam_executor(Executor, made), evaluator, inputs, tmp_path)


def test_evaluates_with_the_npu_models_numbers(tmp_path, tflite_uri, model_uri, npu_uri, examples_uri, no_vela):
    made = []
    out = _evaluate(tmp_path, {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri),
                               keys.MODEL_KEY: artifact(standard_artifacts.Model, model_uri),
                               keys.NPU_MODEL_KEY: artifact(NPUModel, npu_uri),
                               keys.EXAMPLES_KEY: examples_artifact(examples_uri)},
                    made, requirements={"max_int8_accuracy_drop_pp": 0.0, "max_npu_inference_time_s": 1.0},
                    check_examples=CHECKED)
    evaluation, blessing = out[keys.EVALUATION_KEY], out[keys.BLESSING_KEY]
    assert len(made) == 1  # one Beam pipeline, the executor's (the TFX pipeline's beam_pipeline_args)

    # The NPU numbers are the NPUModel's, and nothing was compiled here.
    npu = read_json(os.path.join(npu_uri, "stats.json"))[TARGET]
    assert prop(evaluation, keys.NPU_TARGETS) == TARGET
    assert prop(evaluation, f"{TARGET}.npu_cycles") == npu["npu_cycles"] > 0
    assert prop(evaluation, f"{TARGET}.inference_time_s") == npu["inference_time_s"]
    assert prop(evaluation, f"{TARGET}.encoded_weights_bytes") == npu["encoded_weights_bytes"]
    assert json.loads(prop(evaluation, f"{TARGET}.{keys.PER_LAYER}")) == npu[keys.PER_LAYER] != []
    written = [os.path.join(d, f) for d, _, files in os.walk(evaluation.uri) for f in files]
    assert not os.path.exists(os.path.join(evaluation.uri, "npu"))
    assert not [f for f in written if f.endswith(("vela_stdout.txt", "_vela.tflite"))]

    # Accuracies over every eval record, as the interpreter and the Keras model give them.
    x, y = examples_io.read_examples(examples_uri, "eval")
    tflite_bytes = open(os.path.join(tflite_uri, "model.tflite"), "rb").read()
    assert prop(evaluation, "eval_examples") == len(y) == 100
    assert prop(evaluation, "int8_accuracy") == pytest.approx(
        flatbuffer.int8_accuracy(tflite_bytes, x, y))
    assert prop(evaluation, "fp32_accuracy") == pytest.approx(
        train.accuracy(keras_io.load_model(model_uri), x, y))
    # The flatbuffer's figures come from the converter's analysis.
    conv = read_json(os.path.join(tflite_uri, "stats.json"))
    assert prop(evaluation, "gzip_bytes") == conv["gzip_bytes"]
    assert prop(evaluation, "mode") == "ptq"

    # Its own reference (no baseline input): no drop; the requirements pass, so it is blessed.
    assert prop(evaluation, "int8_accuracy_drop_pp") == 0.0
    for art in (evaluation, blessing):
        assert prop(art, keys.BLESSED) == 1
        assert json.loads(prop(art, keys.REASONS)) == []
    assert prop(blessing, keys.PATH) == "ptq"
    leaf = read_json(os.path.join(evaluation.uri, "leaf.json"))
    assert leaf["blessed"] is True and leaf["npu"][TARGET]["npu_cycles"] == npu["npu_cycles"]
    assert leaf["npu"][TARGET][keys.PER_LAYER] == npu[keys.PER_LAYER]
    assert leaf["requirements"] == {"max_int8_accuracy_drop_pp": 0.0, "max_npu_inference_time_s": 1.0}
    assert os.path.isfile(os.path.join(evaluation.uri, "kernels.npz"))  # the converter's trace, for the report

    # The device runtime: TFLM ran the first tflm.check_examples eval examples next to LiteRT, and its arena.
    n = CHECKED
    assert n != tflm.CHECK_EXAMPLES
    assert prop(evaluation, "tflm_examples") == n < len(y)
    assert prop(evaluation, "tflm_litert_metric") == pytest.approx(flatbuffer.int8_accuracy(tflite_bytes, x[:n], y[:n]))
    assert abs(prop(evaluation, "tflm_metric") - prop(evaluation, "tflm_litert_metric")) <= 0.05
    assert 0 <= prop(evaluation, "tflm_max_lsb") <= 3 and prop(evaluation, "tflm_top1_differ_rate") <= 0.05
    arena = prop(evaluation, "tflm_arena_bytes")
    assert arena == tflm_child("arena", tflite_bytes)["published"] == leaf["tflm_arena"]["published"]
    assert tflm_child("fits", tflite_bytes, arena) and not tflm_child("fits", tflite_bytes, int(0.9 * arena))
    assert not evaluation.has_custom_property("tflm_error") and leaf["tflm_error"] is None
    assert sum(leaf["tflm_lsb_counts"].values()) == n


def test_gates_against_the_baseline_and_the_requirements(tmp_path, tflite_uri, npu_uri, examples_uri, no_vela):
    # A hand-built reference leaf that got every eval example right.
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    write_json(str(baseline / "leaf.json"), {"path": "ptq", "int8_accuracy": 1.0})
    out = _evaluate(tmp_path, {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri),
                               keys.NPU_MODEL_KEY: artifact(NPUModel, npu_uri),
                               keys.BASELINE_KEY: artifact(LeafEvaluation, baseline),
                               keys.EXAMPLES_KEY: examples_artifact(examples_uri)},
                    requirements={"max_int8_accuracy_drop_pp": 1.0, "max_gzip_bytes": 100,
                                  "max_npu_inference_time_s": 1e-9, "npu_target": TARGET, "max_arena_bytes": 1000})
    evaluation, blessing = out[keys.EVALUATION_KEY], out[keys.BLESSING_KEY]
    accuracy = prop(evaluation, "int8_accuracy")
    assert accuracy < 0.99
    assert prop(evaluation, "baseline_int8_accuracy") == 1.0
    assert prop(evaluation, "int8_accuracy_drop_pp") == pytest.approx(100.0 * (1.0 - accuracy))
    gzip_bytes = prop(evaluation, "gzip_bytes")
    time_ms = read_json(os.path.join(npu_uri, "stats.json"))[TARGET]["inference_time_s"] * 1e3
    reasons = [f"INT8 accuracy {accuracy:.2%} is {100 * (1 - accuracy):.2f} pp below the baseline's 100.00% "
               "(max drop 1.0 pp)",
               f"gzip size {gzip_bytes:,} B > max 100 B",
               f"{TARGET} inference time {time_ms:.3f} ms > max 0.000 ms",
               f"TFLM tensor arena {prop(evaluation, 'tflm_arena_bytes'):,} B > max 1,000 B"]
    for art in (evaluation, blessing):
        assert prop(art, keys.BLESSED) == 0
        assert json.loads(prop(art, keys.REASONS)) == reasons
    assert read_json(os.path.join(evaluation.uri, "leaf.json"))["reasons"] == reasons
    assert not evaluation.has_custom_property("fp32_accuracy")  # no Keras model given: none measured


@pytest.mark.parametrize("requirements, message", [
    ('{"max_gzip_bytes": -5}', "requirements.max_gzip_bytes: -5 is less than the minimum of 1"),
    ('{"max_latency_ms": 3}', "requirements: Additional properties are not allowed ('max_latency_ms' was unexpected)"),
    ('{"npu_target": "ethos-u55-128"}', "requirements.npu_target: set, but max_npu_inference_time_s is not"),
])
def test_bad_requirements_fail_before_any_evaluation(tmp_path, tflite_uri, examples_uri, requirements, message):
    """Requirements that reach the executor anyway (an edited spec, a runtime parameter) are checked again."""
    made = []
    evaluator = LeafEvaluator(tflite_model=channel(TFLiteModel), examples=channel(standard_artifacts.Examples),
                              path="ptq")
    with pytest.raises(ConfigError) as e:
        run_executor(beam_executor(Executor, made), evaluator,
                     {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri),
                      keys.EXAMPLES_KEY: examples_artifact(examples_uri)}, tmp_path, requirements=requirements)
    assert str(e.value) == message
    assert made == []  # no Beam pipeline was made
    assert os.listdir(tmp_path / keys.EVALUATION_KEY) == [] and os.listdir(tmp_path / keys.BLESSING_KEY) == []


def test_a_failed_path_gets_a_failed_leaf_and_no_blessing(tmp_path, model_uri, examples_uri):
    """Its TFLiteModel marked failed: nothing is evaluated (no Beam pipeline, the .tflite folder does
    not exist), leaf.json says why, the blessing is 0 (so LeafPusher's condition is false)."""
    made, why = [], "Convert_ptq: ValueError: the converter refused"
    out = _evaluate(tmp_path, {keys.TFLITE_MODEL_KEY: failed_artifact(TFLiteModel, tmp_path / "never_written", why),
                               keys.MODEL_KEY: artifact(standard_artifacts.Model, model_uri),
                               keys.EXAMPLES_KEY: examples_artifact(examples_uri)}, made)
    assert made == []
    evaluation, blessing = out[keys.EVALUATION_KEY], out[keys.BLESSING_KEY]
    for art in (evaluation, blessing):
        assert failure_of(art) == (1, why)
        assert prop(art, keys.BLESSED) == 0 and prop(art, keys.PATH) == "ptq"
        assert json.loads(prop(art, keys.REASONS)) == [why]
    assert read_json(os.path.join(evaluation.uri, "leaf.json")) == {
        "path": "ptq", "failed": True, "error": why, "blessed": False, "reasons": [why]}


def test_a_failed_reference_leaves_the_drop_unjudged_not_the_leaf_failed(tmp_path, tflite_uri, npu_uri,
                                                                          examples_uri, no_vela):
    why = "Convert_ptq: ValueError: the converter refused"
    out = _evaluate(tmp_path, {keys.TFLITE_MODEL_KEY: artifact(TFLiteModel, tflite_uri),
                               keys.NPU_MODEL_KEY: artifact(NPUModel, npu_uri),
                               keys.BASELINE_KEY: failed_artifact(LeafEvaluation, tmp_path / "never_written", why),
                               keys.EXAMPLES_KEY: examples_artifact(examples_uri)},
                    requirements={"max_int8_accuracy_drop_pp": 1.0})
    evaluation, blessing = out[keys.EVALUATION_KEY], out[keys.BLESSING_KEY]
    assert not evaluation.has_custom_property(keys.FAILED) and not blessing.has_custom_property(keys.FAILED)
    assert 0 < prop(evaluation, "int8_accuracy") <= 1  # evaluated
    leaf = read_json(os.path.join(evaluation.uri, "leaf.json"))
    assert leaf["int8_accuracy_drop_pp"] is None and leaf["baseline_int8_accuracy"] is None
    reasons = [f"no INT8 accuracy drop to judge: the reference leaf failed ({why})"]
    assert leaf["reasons"] == reasons and leaf["blessed"] is False
    assert prop(blessing, keys.BLESSED) == 0
    assert json.loads(prop(blessing, keys.REASONS)) == reasons


@pytest.mark.parametrize("args", [["--direct_running_mode=in_memory"],  # the default: beam_args adds FnApiRunner
                                  ["--runner=DirectRunner", "--direct_num_workers=2"], ["--runner=direct"]])
def test_an_in_process_runner_leaves_no_package_of_tfx_behind(tmp_path, monkeypatch, args):
    """TFX builds a 45 MB sdist of itself for remote Beam workers in a temp dir it never deletes; with
    in-process workers the evaluator keeps its Beam args but builds nothing."""
    from tfx.dsl.components.base import base_beam_executor

    from collabopt.core.evaluation import beam_eval
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = beam_eval.beam_args(args)
    executor = Executor(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=args))
    assert os.listdir(tmp_path) == []
    assert executor._make_beam_pipeline().options.get_all_options()["runner"] == args[0].split("=")[1]


@pytest.mark.parametrize("args, local", [(["--runner=FnApiRunner"], True), ([], True),
                                         (["--runner=apache_beam.runners.direct.DirectRunner"], True),
                                         (["--runner=DataflowRunner", "--project=p"], False),
                                         (["--runner=FlinkRunner"], False)])
def test_which_runners_need_no_package(args, local):
    from collabopt.core.evaluation import beam_eval
    assert beam_eval.runs_in_process(args) is local
