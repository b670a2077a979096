"""`collabopt search` on a model judged by a metric that is not accuracy: an autoencoder fine-tuned on
MSE and scored by INT8 reconstruction MSE (lower is better), through the sensitivity pass, the per-layer
schedule and a trial round (real TFX, MLMD, TFMOT, LiteRT, Vela)."""

import pytest
import yaml

from collabopt.search import space
from collabopt.search.record import Record
from collabopt.tests import autoencoder
from collabopt.tests.cli_processes import collabopt

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

# MSE units: the pooled pixels are in [0, 1]; the ptq leaf's MSE is ~0.02, 1 epoch of fine-tuning on
# ~540 examples leaves prune 50% at ~+0.06 and prune 90% at ~+0.18
LIMIT = 0.1


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    uri, model = autoencoder.trained(tmp_path_factory)
    d = tmp_path_factory.mktemp("search_mse")
    cfg = {"name": "search-mse", "paths": ["prune_ptq"], "baseline": {"model_uri": model}, "examples": {"uri": uri},
           "data": {"feature_shape": [autoencoder.FEATURES]},
           "training": {"target": "features", "loss": "mse", "eval_metric": "mse"},
           "convert": {"representative_samples": 32},
           "search": {"sparsities": [0.5, 0.9], "clusters": [8], "per_layer": True, "schedule_budgets": [1.0],
                      "sensitivity_sample": 100, "epochs": {"min": 1, "max": 1},
                      "requirements": {"max_metric_drop": LIMIT}}}
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, log = collabopt("search", str(d / "c.yaml"), "--root", str(d / "root"), log=d / "search.log")
    return code, log, Record.load(d / "root" / "search.json")


def test_a_search_judged_by_mse_measures_drops_as_mse_increases(searched):
    code, log, record = searched
    assert record.eval_metric == "mse"
    leaves = record.rounds[0].leaves
    ref = leaves["ptq"]["int8_metric"]
    assert leaves["ptq"]["drop"] == 0.0 and 0 < ref < 0.05
    for cid, leaf in leaves.items():  # a drop is the MSE's increase over the ptq leaf's, in MSE units
        assert leaf["drop"] == pytest.approx(leaf["int8_metric"] - ref, abs=1e-9), cid
        assert ("max_metric_drop" in space.misses(leaf, record.requirements)) == (leaf["drop"] > LIMIT + 1e-9)
    # one-shot pruning of 90% of a layer's kernel, no fine-tuning, reconstructs worse: a positive drop
    worst = {r["layer"]: r["drop"] for r in record.sensitivity if r["technique"] == "prune" and r["value"] == 0.9}
    assert len(worst) == 4 and all(d > 0 for d in worst.values()), worst
    # the schedule spent the budget in MSE units: its layers' summed one-shot drops fit LIMIT
    rows = {(r["layer"], r["value"]): r["drop"] for r in record.sensitivity if r["technique"] == "prune"}
    assert any(sch["prune"] for sch in record.schedules)
    for sch in record.schedules:
        assert sch["budget"] == LIMIT and sum(rows[(n, s)] for n, s in sch["prune"].items()) <= LIMIT + 1e-12
    met = {cid: leaf for cid, leaf in leaves.items() if not space.misses(leaf, record.requirements)}
    assert code == 0 and record.chosen in met, log[-3000:]
    # the smallest leaf that meets the MSE limit: a pruned one, while a heavier pruned one misses
    assert record.chosen != "ptq" and len(met) < len(leaves), leaves
    assert leaves[record.chosen]["encoded_weights_bytes"] == min(l["encoded_weights_bytes"] for l in met.values())
