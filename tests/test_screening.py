"""search/prefix.py and search/auto.py, the "prefix" and "auto" search strategies, with scripted trial numbers: which
first stages they screen, how groups rank, what a round costs, when they stop, where auto goes."""
import pytest

from collabopt.search import auto, prefix, space

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


def leaf(drop, size, cycles=100):
    return {"drop": drop, "encoded_weights_bytes": size, "npu_cycles": cycles, "flash_bytes": size,
            "inference_time_s": cycles / 1e6, "sram_bytes": 0}


SPACE = space.space(["prune_ptq", "prune_cluster_ptq"], sparsities=(0.5, 0.75), clusters=(8,))
EST = {"ptq": leaf(0, 1000), "prune_ptq_s50": leaf(9, 700), "prune_cluster_ptq_s50_k8": leaf(9, 500),
       "prune_ptq_s75": leaf(9, 450), "prune_cluster_ptq_s75_k8": leaf(9, 300)}
REQ = {"max_metric_drop": 1.0, "max_encoded_weights_bytes": 600}
DROPS = {1: {"ptq": 0.0, "prune_ptq_s50": 0.5, "prune_ptq_s75": 3.0},  # the screening round
         4: {"prune_ptq_s50": 0.2, "prune_cluster_ptq_s50_k8": 0.8, "prune_ptq_s75": 1.5,
             "prune_cluster_ptq_s75_k8": 2.0}}


def scripted(calls, drops=DROPS):
    def run_round(batch, epochs, resume=True):
        calls.append((epochs, [c.id for c in batch]))
        return {c.id: {**leaf(drops[epochs][c.id], EST[c.id]["encoded_weights_bytes"]), "epochs": epochs}
                for c in batch}
    return run_round


def test_screen_is_the_one_stage_leaf_of_the_first_stage():
    pl = space.Candidate("prune_cluster_ptq", schedule="pl1", layer_sparsity=(("a", 0.5),), layer_clusters=(("a", 8),))
    assert prefix.screen(pl) == space.Candidate("prune_ptq", schedule="pl1", layer_sparsity=(("a", 0.5),))
    assert prefix.screen(space.Candidate("cluster_cqat", clusters=16)).id == "cluster_ptq_k16"
    assert prefix.screen(space.Candidate("qat")).id == "qat"
    # the screen shares its stage node with the group: same first stage key
    assert prefix.screen(pl).stage_keys() == pl.stage_keys()[:1]
    assert {g: [c.id for c in cs] for g, cs in prefix.groups(SPACE).items()} == {
        "s50_prune": ["prune_ptq_s50", "prune_cluster_ptq_s50_k8"],
        "s75_prune": ["prune_ptq_s75", "prune_cluster_ptq_s75_k8"]}


def test_groups_rank_by_the_box_area_then_the_screened_drop():
    groups = prefix.groups(SPACE)
    # s50: (1.0 - 0.5) x (600 - 500 B) inside the box; s75's 3.0 is outside it: no area
    assert prefix.rank(groups, {"s50_prune": leaf(0.5, 0), "s75_prune": leaf(3.0, 0)}, EST, REQ) == [
        "s50_prune", "s75_prune"]
    # nothing inside the box yet (every screened drop over the max): the least drop first
    assert prefix.rank(groups, {"s50_prune": leaf(4.0, 0), "s75_prune": leaf(3.0, 0)}, EST, REQ) == [
        "s75_prune", "s50_prune"]


def test_prefix_screens_first_stages_then_trains_the_best_group_fully():
    calls = []
    rec = prefix.run(SPACE, EST, REQ, scripted(calls), min_epochs=1, max_epochs=4, eta=2)
    # cheapest estimate first; prune_ptq_s50 (700 B) cannot meet 600 B by estimate, yet it screens its
    # group's pruning; ptq (1000 B) is no candidate (its leaf is the reference every round builds)
    assert calls == [(1, ["prune_ptq_s75", "prune_ptq_s50"]),
                     (4, ["prune_ptq_s50", "prune_cluster_ptq_s50_k8"]),  # 1 group per round (eta 2)
                     (4, ["prune_ptq_s75", "prune_cluster_ptq_s75_k8"])]  # s75 is estimated cheaper: tried
    assert rec.rounds[0].screen and rec.stopped == "met" and rec.chosen == "prune_cluster_ptq_s50_k8"
    assert [r.cost_epochs for r in rec.rounds] == [2, 8, 8]  # each stage node once, from the baseline
    assert rec.epochs_spent == 18 and rec.feasible_by_estimate == 3


def test_a_budget_stop_still_answers_with_a_leaf_that_meets():
    calls = []
    rec = prefix.run(SPACE, EST, REQ, scripted(calls), min_epochs=1, max_epochs=4, eta=1, budget_epochs=10)
    # eta 1 would take both groups at once (2 + 16 epochs); the budget leaves room for the best one
    assert [c[1] for c in calls[1:]] == [["prune_ptq_s50", "prune_cluster_ptq_s50_k8"]]
    assert rec.stopped == "budget" and rec.chosen == "prune_cluster_ptq_s50_k8" and rec.epochs_spent == 10
    assert rec.best_so_far["misses"] == {}
    # a budget below the screening round runs nothing
    rec = prefix.run(SPACE, EST, REQ, lambda b, e: pytest.fail("ran"), budget_epochs=1)
    assert rec.stopped == "budget" and rec.rounds == [] and rec.chosen is None
    rec = prefix.run(SPACE, EST, REQ, lambda b, e: pytest.fail("ran"), out_of_time=lambda: True)
    assert rec.stopped == "wall time" and rec.rounds == []


def test_equal_min_and_max_epochs_count_the_screened_stage_once():
    rec = prefix.run(SPACE, EST, REQ, scripted([], {2: {**DROPS[1], **DROPS[4]}}), min_epochs=2, max_epochs=2,
                        eta=2)
    # the screened pruning at 2 epochs is the group round's own pruning node (cached): only clustering is new
    assert [r.cost_epochs for r in rec.rounds] == [4, 2, 2]


def test_auto_halves_over_every_candidate_when_a_short_fine_tune_already_meets_the_drop():
    truth = {"prune_ptq_s50": 0.5, "prune_cluster_ptq_s50_k8": 1.6, "prune_ptq_s75": 3.0,
             "prune_cluster_ptq_s75_k8": 4.0}
    calls = []

    def run_round(batch, epochs, resume=True):
        calls.append((epochs, [c.id for c in batch], resume))
        return {c.id: leaf(truth[c.id] / epochs, EST[c.id]["encoded_weights_bytes"]) for c in batch}
    rec = auto.run(SPACE, EST, REQ, run_round, min_epochs=1, max_epochs=4, eta=2)
    # prune_ptq_s50's screen is at 0.5 <= 1.0 after 1 epoch: halving over the candidates that could meet
    assert rec.strategy == "auto" and rec.then == "halving"
    assert calls[0] == (1, ["prune_ptq_s75", "prune_ptq_s50"], False)
    assert calls[1] == (1, ["prune_cluster_ptq_s75_k8", "prune_ptq_s75", "prune_cluster_ptq_s50_k8"], True)
    # its first rung reuses both screened prunings: only the two clusterings are new
    assert [r.cost_epochs for r in rec.rounds][:2] == [2, 2] and rec.rounds[0].screen
    assert rec.epochs_spent == sum(r.cost_epochs for r in rec.rounds)
    assert rec.chosen and not space.misses(rec.leaf, REQ)


def test_auto_trains_groups_fully_when_no_short_fine_tune_meets_the_drop():
    calls = []
    drops = {1: {**DROPS[1], "prune_ptq_s50": 1.5}, 4: DROPS[4]}  # no screen within 1.0 after 1 epoch
    rec = auto.run(SPACE, EST, REQ, scripted(calls, drops), min_epochs=1, max_epochs=4, eta=2)
    assert rec.then == "groups" and calls[1] == (4, ["prune_ptq_s50", "prune_cluster_ptq_s50_k8"])
    assert rec.chosen == "prune_cluster_ptq_s50_k8"


def test_a_space_of_the_reference_alone_answers_with_it():
    ptq = [space.Candidate("ptq")]
    for strategy in (prefix, auto):
        rec = strategy.run(ptq, {"ptq": leaf(0, 1000)}, {"max_metric_drop": 1.0},
                           lambda b, e, resume=True: {c.id: leaf(0.0, 1000) for c in b})
        assert rec.chosen == "ptq" and rec.epochs_spent == 0 and rec.then == "groups"
