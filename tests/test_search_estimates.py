"""The search's one-shot estimates (search/estimates.py) under a wall-time budget and a kill, on a tiny
model (real conversion, Vela, eval): the budget is checked before every measurement; a search killed
during its estimates and started again measures only what it had not saved; a truncated estimates
file is absent (one line), not a crash; a search whose budget is spent answers with the ptq reference
leaf and runs nothing more."""
import json
import os

import pytest
import yaml

from collabopt.mlmd import results
from collabopt.pipelines import config as tree_config
from collabopt.search import estimates, sensitivity
from collabopt.search.record import Record
from collabopt.tests.cli_processes import call, collabopt
from collabopt.tests.helpers import data_spec, fashion_mnist_examples, tiny_model

SIGKILL = -9
CONFIG = {"name": "estimates-test", "paths": ["prune_ptq"], "data": {"train_limit": 300, "eval_limit": 100},
          "convert": {"representative_samples": 32},
          "search": {"paths": ["prune_ptq"], "sparsities": [0.5, 0.75], "per_layer": False,
                     "sensitivity_sample": 100, "epochs": {"min": 1, "max": 1},
                     "requirements": {"max_metric_drop": 0.5}}}
# ptq's estimate is the unchanged model's measure ("base"): 3 measurements, saved after each
CANDIDATES = ["prune_ptq_s50", "prune_ptq_s75", "ptq"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("estimates")
    return tiny_model(d / "model"), fashion_mnist_examples(d / "examples", 300, 100)


def _measure(made, work_dir, monkeypatch, out_of_time=lambda measured: False):
    """load_or_measure of CONFIG in `work_dir`: (its answer, the measurements it made, the lines it said)."""
    measured, said, measure = [], [], sensitivity.measure

    def counted(model, sample, out_dir, *args, **kwargs):
        measured.append(os.path.relpath(out_dir, work_dir))
        return measure(model, sample, out_dir, *args, **kwargs)
    monkeypatch.setattr(sensitivity, "measure", counted)
    est = estimates.load_or_measure(tree_config.merge(CONFIG), made[0], made[1], str(work_dir), say=said.append,
                                    out_of_time=lambda: out_of_time(measured))
    return est, measured, said


def _saved(work_dir):
    with open(os.path.join(work_dir, estimates.ESTIMATES_FILE)) as f:
        return json.load(f)


def test_the_budget_is_checked_before_every_measurement(made, tmp_path, monkeypatch):
    """Out of time after two measurements: the third is not made; what was measured is saved, and the
    next search measures only the rest."""
    est, measured, _ = _measure(made, tmp_path, monkeypatch, out_of_time=lambda m: len(m) >= 2)
    assert measured == ["sensitivity/base", "estimates/prune_ptq_s50"] and not est["complete"]
    assert sorted(est["estimates"]) == sorted(_saved(tmp_path)["estimates"]) == ["prune_ptq_s50", "ptq"]
    est, measured, said = _measure(made, tmp_path, monkeypatch)
    assert measured == ["estimates/prune_ptq_s75"] and est["complete"]
    assert sorted(est["estimates"]) == CANDIDATES
    assert said == [f"collabopt search: estimates from {tmp_path / estimates.ESTIMATES_FILE}"]


@pytest.mark.slow  # a forked child importing TF and TFX first
def test_a_search_killed_in_its_estimates_does_not_redo_those_it_saved(made, tmp_path, monkeypatch):
    """SIGKILL right after the second save (the base and one candidate): started again, the estimates
    file is whole and only the other candidate is measured; the saved one is kept as it was."""
    assert call("collabopt.search.estimates:load_or_measure", tree_config.merge(CONFIG), *made, str(tmp_path),
                faults=[("sigkill_after_estimates_saved", (2,))]) == SIGKILL
    saved = _saved(tmp_path)
    assert saved["base"] and sorted(saved["estimates"]) == ["prune_ptq_s50", "ptq"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # saved atomically: no partial file left
    est, measured, _ = _measure(made, tmp_path, monkeypatch)
    assert measured == ["estimates/prune_ptq_s75"] and est["complete"]
    assert est["estimates"]["prune_ptq_s50"] == saved["estimates"]["prune_ptq_s50"] and est["base"] == saved["base"]


def test_a_truncated_estimates_file_is_measured_again(made, tmp_path, monkeypatch):
    """A file cut short (a kill before saves were atomic, a full disk) is absent: one line naming it,
    then everything is measured; no JSONDecodeError."""
    path = tmp_path / estimates.ESTIMATES_FILE
    path.write_text('{"key": "abc", "base": {"int8_metr')
    est, measured, said = _measure(made, tmp_path, monkeypatch, out_of_time=lambda m: len(m) >= 1)
    assert said == [f"collabopt search: {path} is unreadable (JSONDecodeError: Unterminated string starting at: "
                    "line 1 column 25 (char 24)); measuring again"]
    assert measured == ["sensitivity/base"] and _saved(tmp_path)["base"] == est["base"]


@pytest.mark.slow  # a real pipeline run (the reference leaf)
def test_a_search_out_of_time_answers_with_the_reference_leaf(made, tmp_path):
    """max_wall_time_s spent by the reference round: no estimate is measured and no trial round runs
    (one run in MLMD); the search answers with the ptq leaf, which meets the drop (it is the reference)."""
    cfg = {**CONFIG, "baseline": {"model_uri": made[0]}, "examples": {"uri": made[1]},
           "search": {**CONFIG["search"], "budget": {"max_wall_time_s": 0.001}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, log = collabopt("search", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "root"), log=tmp_path / "s.log")
    assert code == 0, log[-3000:]
    record = Record.load(tmp_path / "root" / "search.json")
    assert record.stopped == "wall time" and record.chosen == "ptq" and record.rounds == [], log[-3000:]
    assert record.estimates == {} and record.base is None
    assert len(results.runs(results.connect(str(tmp_path / "root" / "metadata.sqlite")))) == 1
    assert "chosen: ptq" in log


def test_a_candidate_that_cannot_be_measured_is_a_named_failure(made, tmp_path, monkeypatch):
    """A one-shot model the interpreter cannot run (what `sparsities: [0.99]` met: XNNPACK failing to
    prepare it) leaves that candidate out, named with why, and the others are measured: not a failed
    search. Saved, so a restart does not try it again."""
    measure = sensitivity.measure

    def xnnpack_fails_at_75(model, sample, out_dir, *args, **kwargs):
        if out_dir.endswith("prune_ptq_s75"):
            raise RuntimeError("failed to create XNNPACK runtime\nNode number 3 (TfLiteXNNPackDelegate) failed to prepare.")
        return measure(model, sample, out_dir, *args, **kwargs)
    monkeypatch.setattr(sensitivity, "measure", xnnpack_fails_at_75)
    said = []
    est = estimates.load_or_measure(tree_config.merge(CONFIG), made[0], made[1], str(tmp_path), say=said.append)
    why = ("its one-shot model could not be converted or evaluated: RuntimeError: failed to create XNNPACK "
           "runtime Node number 3 (TfLiteXNNPackDelegate) failed to prepare.")
    assert est["complete"] and sorted(est["estimates"]) == ["prune_ptq_s50", "ptq"]
    assert est["failed"] == {"prune_ptq_s75": why} == _saved(tmp_path)["failed"]
    assert said == [f"collabopt search: candidate prune_ptq_s75 left out: {why}"]


def test_a_thinned_candidate_is_estimated_by_channel_prunings_own_surgery(made, tmp_path, monkeypatch):
    """thin_ptq at keep 0.5: the model thinned by the ChannelPruner's choice (no fine-tuning), converted
    and compiled: its flatbuffer has the NPU-aligned widths and Vela counts fewer cycles than the
    baseline's; the thin section's choice parameters are part of the estimates' key."""
    from collabopt.core.npu import per_layer
    from collabopt.core.tflite import flatbuffer

    cfg = tree_config.merge({**CONFIG, "search": {**CONFIG["search"], "paths": ["thin_ptq"], "thin_keep_ratios": [0.5]}})
    measured, measure = [], sensitivity.measure

    def counted(model, sample, out_dir, *args, **kwargs):
        measured.append(os.path.relpath(out_dir, tmp_path))
        return measure(model, sample, out_dir, *args, **kwargs)
    monkeypatch.setattr(sensitivity, "measure", counted)
    est = estimates.load_or_measure(cfg, made[0], made[1], str(tmp_path), say=lambda line: None)
    assert est["complete"] and not est["failed"] and sorted(est["estimates"]) == ["ptq", "thin_ptq_t50"]
    assert measured == ["sensitivity/base", "estimates/thin_ptq_t50"]
    thin, base = est["estimates"]["thin_ptq_t50"], est["base"]
    assert thin["npu_cycles"] < base["npu_cycles"] and thin["inference_time_s"] < base["inference_time_s"]
    with open(tmp_path / "estimates" / "thin_ptq_t50" / "model.tflite", "rb") as f:
        layers = flatbuffer.layer_stats(f.read())
    block = per_layer.channel_granularity(cfg["search"]["npu_target"])
    widths = [s["shape"][0] for s in layers if s["op"] == "CONV_2D"]
    assert widths and all(w % block == 0 and w < 16 for w in widths), widths  # 16 channels kept to 8
    other = tree_config.merge({**cfg, "thin": {"score": "bn"}})
    assert estimates.key(other, made[0]) != estimates.key(cfg, made[0])



def _thinned_cycles(made, keep, work):
    """ethos-u55-128 cycles of the tiny model thinned to `keep` by channel pruning's own choice."""
    from collabopt.core.model import keras_io
    sample = sensitivity.Sample(data_spec(made[1]), representative=32, eval_limit=32)
    thin = sensitivity.thinned(keras_io.load_model(made[0]), keep, sample, "ethos-u55-128", str(work / "thin"))
    return sensitivity.measure(thin, sample, str(work / "m"), "ethos-u55-128")["npu_cycles"]


def test_a_latency_limit_fits_the_keep_ratios_on_one_shot_thinned_models(made, tmp_path, monkeypatch):
    """No thin_keep_ratios and a cycles limit: the keep ratios are the largest whose thinned model's
    one-shot cycles meet it (and 0.1 below); the next larger one misses it; each probe is measured
    once, saved, and reused as that candidate's estimate; a search started again fits nothing."""
    from collabopt.search import space
    limit = _thinned_cycles(made, 0.5, tmp_path / "at_half")  # met at keep 0.5 at least
    cfg = tree_config.merge({**CONFIG, "search": {**CONFIG["search"], "paths": ["thin_ptq"],
                                                  "requirements": {"max_npu_cycles": limit}}})
    measured, said, measure = [], [], sensitivity.measure

    def counted(model, sample, out_dir, *args, **kwargs):
        measured.append(os.path.relpath(out_dir, tmp_path))
        return measure(model, sample, out_dir, *args, **kwargs)
    monkeypatch.setattr(sensitivity, "measure", counted)
    est = estimates.load_or_measure(cfg, made[0], made[1], str(tmp_path), say=said.append)
    keep, fit = est["keeps"][0], est["fit"]
    assert keep >= 0.5 and est["keeps"] == [keep, round(keep - 0.1, 2)]
    assert fit[str(keep)]["npu_cycles"] <= limit
    if keep != space.KEEP_GRID[0]:  # the next keep ratio up misses it: the largest that meets it
        above = space.KEEP_GRID[space.KEEP_GRID.index(keep) - 1]
        assert fit[str(above)]["npu_cycles"] > limit
        assert _thinned_cycles(made, above, tmp_path / "above") > limit
    probes = [m for m in measured if m.startswith("fit/")]
    assert len(probes) == len(set(probes)) == len(fit) <= 5
    assert sorted(est["estimates"]) == sorted(["ptq"] + [f"thin_ptq_t{round(k * 100)}" for k in est["keeps"]])
    assert est["estimates"][f"thin_ptq_t{round(keep * 100)}"]["npu_cycles"] == fit[str(keep)]["npu_cycles"]
    # the probes' numbers are the candidates' estimates where they were measured
    assert [m for m in measured if m.startswith("estimates/")] == [
        f"estimates/thin_ptq_t{round(k * 100)}" for k in est["keeps"] if str(k) not in fit]
    assert said[0] == (f"collabopt search: thin keep ratios {', '.join(map(str, est['keeps']))}, fitted to "
                       f"max_npu_cycles {limit:g} by one-shot ethos-u55-128 numbers")
    measured.clear()
    again = estimates.load_or_measure(cfg, made[0], made[1], str(tmp_path), say=lambda line: None)
    assert measured == [] and again["keeps"] == est["keeps"] and again["estimates"] == est["estimates"]
