"""The search's pure parts on hand-made inputs: Pareto fronts, hypervolume, schedules, halving, stop rule."""
import pytest

from collabopt.core.evaluation import pareto
from collabopt.search import halving, per_layer, space

MM = (pareto.MIN, pareto.MIN)


def test_front_and_ranks_with_directions():
    pts = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2)]
    assert pareto.front(pts, MM) == [0, 1, 3, 4]  # (3, 3) is dominated by (2, 2); equal points both stay
    assert pareto.ranks(pts, MM) == [0, 0, 1, 0, 0]
    # accuracy up, bytes down
    assert pareto.front([(0.9, 100), (0.8, 50), (0.85, 120)], (pareto.MAX, pareto.MIN)) == [0, 1]
    # crowding: extremes inf; (2, 2): x neighbours 1 and 4 -> 3/4, y neighbours 1.5 and 5 -> 3.5/4;
    # (4, 1.5): x 2 and 5 -> 3/4, y 1 and 2 -> 1/4
    assert pareto.crowding([(1, 5), (2, 2), (4, 1.5), (5, 1)], MM) == [float("inf"), 1.625, 1.0, float("inf")]
    assert pareto.crowding([(1, 3), (1, 3)], MM) == [0.0, 0.0]  # nothing to tell them apart
    with pytest.raises(ValueError, match="direction 'up' is neither 'min' nor 'max'"):
        pareto.front([(1,)], ("up",))


def test_hypervolume_and_coverage():
    # reference (10, 10): strips 8*5 + 6*3 + 5*1 = 40 + 18 + 5... computed by hand: x=2,y=5 -> 8*5=40;
    # x=4,y=2 -> 6*3=18; x=5,y=1 -> 5*1=5; (6,6) is dominated and adds nothing.
    pts = [(2, 5), (4, 2), (5, 1), (6, 6)]
    assert pareto.hypervolume_2d(pts, (10, 10), MM) == 63.0
    assert pareto.hypervolume_2d([(11, 1)], (10, 10), MM) == 0.0  # beyond the reference
    assert pareto.coverage([(2, 5)], pts, (10, 10), MM) == pytest.approx(40 / 63)
    # maximize the first: (0.9, 100) vs reference (0.5, 200) -> 0.4 * 100
    assert pareto.hypervolume_2d([(0.9, 100)], (0.5, 200), (pareto.MAX, pareto.MIN)) == pytest.approx(40.0)


TOTALS = {"encoded_weights_bytes": 1000, "npu_cycles": 100}


def row(layer, technique, value, drop, bytes_, cycles=0):
    return {"layer": layer, "technique": technique, "value": value, "drop": drop,
            "saved": {"encoded_weights_bytes": bytes_, "npu_cycles": cycles}}


def test_schedule_spends_the_budget_where_the_npu_saves_most():
    rows = [row("a", "prune", 0.5, 0.2, 100), row("a", "prune", 0.8, 1.0, 300),
            row("b", "prune", 0.5, 0.1, 200, 10),  # saving 0.2 + 0.1 = 0.3 for 0.1 pp: best ratio
            row("c", "prune", 0.5, -0.1, 50),      # a gain: taken first
            row("d", "prune", 0.5, 0.0, 0)]        # saves nothing: never taken
    sched, spent = per_layer.build(rows, "prune", 0.9, TOTALS)
    # c (gain 0.1 pp), b (ratio 3), a@0.5 (0.1 / 0.2 = 0.5): spent -0.1 + 0.1 + 0.2; moving a to 0.8
    # costs 0.8 more: 1.0 > 0.9
    assert sched == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert spent == pytest.approx(0.2)
    sched, spent = per_layer.build(rows, "prune", 1.0, TOTALS)
    assert sched == {"a": 0.8, "b": 0.5, "c": 0.5} and spent == pytest.approx(1.0)
    # what counts as saving: x saves bytes (0.2 of the total), y some bytes and cycles (0.05 + 0.3)
    xy = [row("x", "prune", 0.5, 0.1, 200), row("y", "prune", 0.5, 0.1, 50, 30)]
    assert per_layer.build(xy, "prune", 0.1, TOTALS)[0] == {"y": 0.5}
    assert per_layer.build(xy, "prune", 0.1, TOTALS, {"encoded_weights_bytes": 1.0})[0] == {"x": 0.5}
    # clustering: fewer clusters is stronger
    crow = [row("a", "cluster", 16, 0.1, 100), row("a", "cluster", 4, 0.5, 400)]
    assert per_layer.build(crow, "cluster", 0.5, TOTALS)[0] == {"a": 4}
    assert per_layer.build(crow, "cluster", 0.3, TOTALS)[0] == {"a": 16}


def test_space_ids_and_shared_stages():
    sch = {"name": "sched1", "prune": {"pw_1": 0.7, "pw_2": 0.3}, "cluster": {"pw_1": 4}}
    cands = space.space(["prune_ptq", "prune_cluster_ptq"], [0.5, 0.75], [8], [sch])
    assert [c.id for c in cands] == ["ptq", "prune_ptq_s50", "prune_ptq_s75", "prune_ptq_sched1",
                                     "prune_cluster_ptq_s50_k8", "prune_cluster_ptq_s75_k8",
                                     "prune_cluster_ptq_sched1"]
    by_id = {c.id: c for c in cands}
    assert by_id["prune_cluster_ptq_sched1"].layer_clusters == (("pw_1", 4),)
    assert by_id["prune_cluster_ptq_s50_k8"].stage_keys() == ["s50_prune", "s50_prune_k8_cluster"]
    # prune_ptq_s50 and prune_cluster_ptq_s50_k8 share the pruning: 3 fine-tuned nodes, not 4
    assert space.round_epochs([by_id["prune_ptq_s50"], by_id["prune_cluster_ptq_s50_k8"],
                                by_id["prune_ptq_s75"]], 2) == 6  # 2 epochs x s50_prune, s50..cluster, s75_prune
    # resumed from 1 epoch: each candidate goes on by 1 epoch in its last stage; a QAT leaf starts again
    pqat = space.Candidate("prune_pqat", 0.5)
    assert space.round_epochs([by_id["prune_ptq_s50"], by_id["prune_cluster_ptq_s50_k8"], pqat], 2, 1) == 2 + 4


def leaf(drop, size, cycles, sram=0):
    return {"drop": drop, "encoded_weights_bytes": size, "npu_cycles": cycles, "flash_bytes": size,
            "inference_time_s": cycles / 1e6, "sram_bytes": sram}


def test_halving_stops_at_the_cheapest_leaf_that_meets_everything():
    cands = [space.Candidate("prune_ptq", s) for s in (0.25, 0.5, 0.75, 0.9)]
    est = {c.id: leaf(10, 1000 * (1 - c.sparsity), 100) for c in cands}
    # drop after fine-tuning: larger sparsity hurts; more epochs help
    truth = {"prune_ptq_s25": 0.1, "prune_ptq_s50": 0.5, "prune_ptq_s75": 1.5, "prune_ptq_s90": 4.0}
    calls = []

    def run_round(batch, epochs):
        calls.append((epochs, [c.id for c in batch]))
        return {c.id: leaf(truth[c.id] / epochs, est[c.id]["encoded_weights_bytes"], 100) for c in batch}
    req = {"max_metric_drop": 1.0, "max_encoded_weights_bytes": 700}
    rec = halving.run(cands, est, req, run_round, min_epochs=1, max_epochs=4, eta=2)
    # s25's estimate (750 B) is over 700 B + 5% slack: never fine-tuned; at 1 epoch s50 meets all but
    # s75/s90 are estimated cheaper and alive; halving keeps 2 of the 3 front leaves: the extremes
    # (s90 smallest, s50 lowest drop), not the lower drop s75; at 2 epochs s90 is still cheaper than the
    # meeting s50 and kept (extremes tie, the cheaper goes on); at 4 epochs it meets (1.0 pp)
    assert calls == [(1, ["prune_ptq_s90", "prune_ptq_s75", "prune_ptq_s50"]),
                     (2, ["prune_ptq_s90", "prune_ptq_s50"]), (4, ["prune_ptq_s90"])]
    assert rec.chosen == "prune_ptq_s90" and rec.stopped == "met" and rec.leaf["drop"] == 1.0
    # later rounds go on from the previous round's models: 1, then 2 more epochs each
    assert rec.epochs_spent == 3 + 2 + 2 and rec.feasible_by_estimate == 3
    assert halving.run(cands, est, req, run_round, max_epochs=4, resume=False).epochs_spent == 3 + 4 + 4


def test_infeasible_returns_best_so_far_and_misses():
    cands = [space.Candidate("prune_ptq", s) for s in (0.5, 0.75)]
    est = {"prune_ptq_s50": leaf(5, 500, 88), "prune_ptq_s75": leaf(9, 250, 80)}
    leaves = {"prune_ptq_s50": leaf(2.0, 500, 90, sram=10), "prune_ptq_s75": leaf(3.0, 250, 80, sram=10)}
    req = {"max_metric_drop": 1.0, "max_npu_cycles": 85, "max_sram_bytes": 20}  # s50: 88 est. is within 5% slack
    rec = halving.run(cands, est, req, lambda b, e: {c.id: leaves[c.id] for c in b}, max_epochs=1)
    assert rec.chosen is None and rec.stopped == "exhausted"
    assert rec.best_so_far == {
        "best": {"drop": ("prune_ptq_s50", 2.0), "encoded_weights_bytes": ("prune_ptq_s75", 250),
                 "npu_cycles": ("prune_ptq_s75", 80)},
        "misses": {"max_metric_drop": 1.0},  # cycles: s75 meets 85; SRAM: both meet
        "closest": {"max_metric_drop": ("prune_ptq_s50", 2.0)}}
    # a budget smaller than the first round runs nothing
    rec = halving.run(cands, est, req, lambda b, e: pytest.fail("ran"), max_epochs=1, budget_epochs=1)
    assert rec.stopped == "budget" and rec.rounds == []


def test_nothing_fits_by_estimate_still_answers_with_the_closest():
    cands = [space.Candidate("prune_ptq", s) for s in (0.5, 0.75, 0.9)]
    est = {"prune_ptq_s50": leaf(1, 500, 300), "prune_ptq_s75": leaf(2, 250, 200), "prune_ptq_s90": leaf(3, 100, 400)}
    req = {"max_npu_cycles": 100}
    ran = []
    rec = halving.run(cands, est, req, lambda b, e: ran.extend(c.id for c in b) or {c.id: est[c.id] for c in b},
                     max_epochs=1, eta=2)
    assert rec.feasible_by_estimate == 0
    assert ran == ["prune_ptq_s75", "prune_ptq_s50"]  # ceil(3 / 2) closest: 200 and 300 cycles vs 100
    assert rec.best_so_far["misses"] == {"max_npu_cycles": 100}


def test_search_report_fronts_and_tables():
    import dataclasses

    from collabopt.search import record as search_record, report
    lf = {"a": leaf(0.5, 900, 100), "b": leaf(1.0, 500, 120), "c": leaf(1.5, 950, 90), "d": leaf(2.0, 600, 200)}
    record = search_record.Record.from_json({
        "strategy": "halving", "rounds": [{"epochs": 1, "ids": list(lf), "cost_epochs": 3, "leaves": lf}],
        "chosen": "b", "considered": 4, "feasible_by_estimate": 4, "epochs_spent": 3, "stopped": "met",
        "requirements": {"max_metric_drop": 1.0}, "npu_target": "u55",
        "sensitivity": [row("pw_1", "prune", 0.5, 0.0025, 120, 7)],
        "schedules": [{"name": "pl1", "budget": 0.01, "prune": {"pw_1": 0.5}, "cluster": {}}]})
    assert report.front_ids(lf, "encoded_weights_bytes") == ["a", "b"]  # c: worse than a; d: than b
    assert report.front_ids(lf, "inference_time_s") == ["a", "c"]  # a is faster than b and d
    page = report.render(record)
    assert "chosen: <b>b</b>" in page and page.count("<img") == 2
    # drops in the configured metric's units: an MSE's increase is no percentage
    mse = report.render(dataclasses.replace(record, eval_metric="mse"))
    assert '<td>0.5</td><td>+0.0025</td><td>120</td>' in mse
    assert '<td class="l">pw_1</td><td>prune</td><td>0.5</td><td>+0.25 pp</td><td>120</td><td>7</td>' in page
    assert '<td class="l">pl1</td><td>+1.00 pp</td><td>pw_1: 0.5</td><td>-</td>' in page


def test_search_section_is_checked():
    from collabopt import schemas
    with pytest.raises(schemas.ConfigError, match=r"^search\.epochs: min 3 is more than max 2$"):
        schemas.check({"search": {"epochs": {"min": 3, "max": 2}}})
    with pytest.raises(schemas.ConfigError, match=r"search\.requirements\.max_npu_cycles: 0 is less than the minimum of 1"):
        schemas.check({"search": {"requirements": {"max_npu_cycles": 0}}})
    with pytest.raises(schemas.ConfigError, match=r"search\.paths\.0: 'prune' is not one of"):
        schemas.check({"search": {"paths": ["prune"]}})


def test_a_leaf_that_met_before_it_was_eliminated_can_still_be_chosen():
    cands = [space.Candidate("prune_ptq", s) for s in (0.5, 0.6, 0.75, 0.9)]
    est = {c.id: leaf(10, 1000 * (1 - c.sparsity), 100) for c in cands}
    # 1 epoch: s75 (250 B) and s60 (400 B) meet, but s90 is estimated cheaper and alive; halving keeps
    # the front's extremes, s90 (smallest) and s50 (lowest drop), and cuts s75; 2 epochs: s90 misses
    # (1.2 pp), yet s75's 1-epoch model met and is the cheapest leaf that did
    drops = {1: {"prune_ptq_s50": 0.1, "prune_ptq_s60": 0.9, "prune_ptq_s75": 0.8, "prune_ptq_s90": 5.0},
             2: {"prune_ptq_s50": 0.1, "prune_ptq_s90": 1.2}}
    rec = halving.run(cands, est, {"max_metric_drop": 1.0}, lambda b, e: {
        c.id: {**leaf(drops[e][c.id], est[c.id]["encoded_weights_bytes"], 100), "epochs": e} for c in b}, max_epochs=2)
    assert [r.ids for r in rec.rounds][1] == ["prune_ptq_s90", "prune_ptq_s50"]
    assert rec.chosen == "prune_ptq_s75" and rec.leaf["epochs"] == 1 and rec.leaf["drop"] == 0.8


def test_a_failed_trial_meets_nothing_and_is_promoted_last():
    from collabopt.search import driver
    failed = driver.leaf_numbers({"path": "prune_ptq_s75", "failed": True, "error": "Pruner_s75_prune_e1: boom"},
                                     "ethos-u55-128")
    assert failed["error"] == "Pruner_s75_prune_e1: boom" and set(space.misses(failed, {
        "max_metric_drop": 1.0, "max_npu_cycles": 10})) == {"max_metric_drop", "max_npu_cycles"}
    a, b = space.Candidate("prune_ptq", 0.75), space.Candidate("prune_ptq", 0.5)
    assert halving.promote([a, b], {a.id: failed, b.id: leaf(2.0, 900, 90)}, 1) == [b]
    # a leaf measured by MSE: its own direction-aware metric_drop is the drop
    ok = {"path": "p", "metric_drop": 0.25, "int8_metric": 1.5,
          "npu": {"u55": {k: 1 for k in space.NPU_NUMBERS}}}
    assert driver.leaf_numbers(ok, "u55")["drop"] == 0.25
    assert space.metric_drop({"int8_metric": 1.5}, {"int8_metric": 1.25}, "mse") == 0.25
    assert space.metric_drop({"int8_metric": 0.80}, {"int8_metric": 0.85}, "accuracy") == pytest.approx(0.05)


def test_a_trial_of_the_configs_own_stages_is_the_trees_node(tmp_path):
    """The tree and a search round build nodes with one builder: a trial whose every stage has the
    config's own parameters is the tree's node (same id, same order), so either one's execution is
    the other's cache hit; a trial with other parameters gets its own key."""
    from collabopt.pipelines import tree
    from collabopt.search import trials

    paths = ["prune_ptq", "prune_cluster_pcqat", "thin_prune_ptq"]
    cfg = {"paths": paths, "prune": {"target_sparsity": 0.5, "epochs": 1}, "thin": {"keep_ratio": 0.5, "epochs": 1},
           "cluster": {"number_of_clusters": 8, "epochs": 1}, "qat": {"epochs": 1},
           "search": {"paths": paths, "sparsities": [0.5, 0.75], "clusters": [8]}}
    in_tree = [c.id for c in tree.create_pipeline(cfg, str(tmp_path / "t")).components]
    own = [space.Candidate(p, 0.5, 8 if "cluster" in p else None, keep=0.5 if "thin" in p else None) for p in paths]
    in_round = [c.id for c in trials.create_round(cfg, own, 1, str(tmp_path / "s")).pipeline.components]
    assert [i for i in in_tree if i in in_round] == [i for i in in_round if i in in_tree]  # same order
    assert set(in_round) <= set(in_tree)
    assert {"Pruner", "SparseClusterer", "PCQAT", "Convert_prune_cluster_pcqat", "Evaluate_prune_ptq",
            "ChannelPruner", "ThinPruner", "Evaluate_thin_prune_ptq"} <= set(in_round)
    other = trials.create_round(cfg, [space.Candidate("prune_ptq", 0.75), space.Candidate("thin_prune_ptq", 0.5, keep=0.75)],
                                1, str(tmp_path / "o"))
    by_id = {c.id: c for c in other.pipeline.components}
    assert {"Pruner_s75_e1", "ChannelPruner_t75_e1", "ThinPruner_t75_s50_e1", "Evaluate_thin_prune_ptq_t75_s50_e1"} <= set(by_id)
    thin = by_id["ChannelPruner_t75_e1"].exec_properties
    assert (thin["keep_ratio"], thin["npu_target"], thin["epochs"]) == (0.75, "ethos-u55-128", 1)


def test_the_arena_is_judged_on_the_trials_leaf_by_the_gates_rule():
    """max_arena_bytes: no one-shot estimate has an arena, so it excludes no candidate; the trial's
    measured arena (TFLM, via leaf.json) decides, by the tree gate's own rule; a miss names the leaf."""
    from collabopt.cli.search import summary
    from collabopt.core.evaluation import gates
    from collabopt.search import driver, stop

    cands = [space.Candidate("prune_ptq", s) for s in (0.5, 0.75)]
    est = {c.id: leaf(1, 1000 * (1 - c.sparsity), 100) for c in cands}  # no arena: never estimated
    arena = {"prune_ptq_s50": 4_000, "prune_ptq_s75": 8_640}  # the cheaper leaf needs more RAM

    def run_round(batch, epochs):
        return {c.id: {**leaf(0.5, est[c.id]["encoded_weights_bytes"], 100), gates.ARENA_BYTES: arena[c.id]}
                for c in batch}
    rec = halving.run(cands, est, {"max_arena_bytes": 4_096}, run_round, max_epochs=1)
    assert rec.feasible_by_estimate == 2 and rec.chosen == "prune_ptq_s50" and rec.leaf[gates.ARENA_BYTES] == 4_000
    rec = halving.run(cands, est, {"max_arena_bytes": 3_000}, run_round, max_epochs=1)
    assert rec.chosen is None and rec.best_so_far["misses"] == {"max_arena_bytes": 1_000}
    assert rec.best_so_far["closest"] == {"max_arena_bytes": ("prune_ptq_s50", 4_000)}
    rec.requirements = {"max_arena_bytes": 3_000}
    assert stop.named_misses(rec) == [
        "max_arena_bytes 3,000: missed by 1,000 (closest: prune_ptq_s50, tflm_arena_bytes 4,000)"]
    assert "  no leaf meets max_arena_bytes 3,000: missed by 1,000 (closest: prune_ptq_s50, tflm_arena_bytes " \
           "4,000)" in summary(rec)
    # the search and the tree's gate judge one number by one rule: at the limit passes, a byte over misses
    for value, limit in ((4_000, 4_000), (4_001, 4_000)):
        tree_leaf = {gates.ARENA_BYTES: value, "tflm_error": None, "tflm_max_lsb": 0}
        assert bool(space.misses({gates.ARENA_BYTES: value}, {"max_arena_bytes": limit})) == \
            bool(gates.device(tree_leaf, {"max_arena_bytes": limit})) == (value > limit)
    # leaf.json -> the search's numbers: the measured arena; a leaf TFLM could not run misses by inf
    numbers = {"path": "p", "metric_drop": 0.0, "int8_metric": 0.9, "npu": {"u55": {k: 1 for k in space.NPU_NUMBERS}}}
    assert driver.leaf_numbers({**numbers, gates.ARENA_BYTES: 4_000}, "u55")[gates.ARENA_BYTES] == 4_000
    crashed = driver.leaf_numbers({**numbers, gates.ARENA_BYTES: None, "tflm_error": "segfault"}, "u55")
    assert space.misses(crashed, {"max_arena_bytes": 10**9}) == {"max_arena_bytes": float("inf")}


def test_a_latency_requirement_brings_thinned_candidates_in():
    """Thin keep ratios are a dimension of the space (ids t75 / t50, their own stage nodes); without
    search.paths a time or cycles limit adds every path below channel pruning; when no unthinned
    candidate can meet the limit by estimate, the thinned ones are what the search explores."""
    from collabopt.pipelines import config as tree_config

    cands = space.space(["thin_ptq", "thin_prune_ptq"], [0.5], [8], keeps=[0.75, 0.5],
                        schedules=[{"name": "pl1", "prune": {"a": 0.5}, "cluster": {}}])
    assert [c.id for c in cands] == ["ptq", "thin_ptq_t75", "thin_ptq_t50", "thin_prune_ptq_t75_s50",
                                     "thin_prune_ptq_t50_s50"]  # per-layer schedules: unthinned paths only
    by_id = {c.id: c for c in cands}
    assert by_id["thin_prune_ptq_t50_s50"].stage_keys() == ["t50_thin", "t50_thin_s50_prune"]
    assert by_id["thin_prune_ptq_t50_s50"].stage_tokens() == ["t50", "s50"]
    assert not by_id["thin_ptq_t50"].continues()  # a thinned model is not thinned again
    # thin_ptq_t50 and thin_prune_ptq_t50_s50 share their thinning: 3 fine-tuned nodes, not 4
    assert space.round_epochs([by_id["thin_ptq_t50"], by_id["thin_prune_ptq_t50_s50"], by_id["thin_ptq_t75"]], 2) == 6

    base = {"paths": ["prune_ptq"], "search": {"sparsities": [0.5], "thin_keep_ratios": [0.5]}}
    assert [c.id for c in space.of_config(tree_config.merge(base))] == ["ptq", "prune_ptq_s50"]
    timed = tree_config.merge({**base, "search": {**base["search"],
                                                  "requirements": {"max_npu_inference_time_s": 0.6}}})
    assert space.searched_paths(timed) == ["ptq", "prune_ptq", "thin_ptq", "thin_prune_ptq"]
    found = space.of_config(timed)
    assert [c.id for c in found] == ["ptq", "prune_ptq_s50", "thin_ptq_t50", "thin_prune_ptq_t50_s50"]
    named = tree_config.merge({**base, "search": {**timed["search"], "paths": ["prune_ptq"]}})
    assert [c.id for c in space.of_config(named)] == ["ptq", "prune_ptq_s50"]  # search.paths: as named

    def est(time_s, weights):
        return {"drop": 0.3, "encoded_weights_bytes": weights, "npu_cycles": int(time_s * 1e6),
                "inference_time_s": time_s, "sram_bytes": 1, "flash_bytes": weights}
    estimates = {"ptq": est(1.0, 1000), "prune_ptq_s50": est(0.99, 600), "thin_ptq_t50": est(0.52, 300),
                 "thin_prune_ptq_t50_s50": est(0.51, 200)}
    req = timed["search"]["requirements"]
    assert [c.id for c in space.order(found, estimates, req)] == ["thin_prune_ptq_t50_s50", "thin_ptq_t50"]

    def run_round(batch, epochs):
        return {c.id: {**estimates[c.id], "drop": 0.004} for c in batch}
    rec = halving.run(found, estimates, {**req, "max_metric_drop": 0.01}, run_round, max_epochs=1)
    assert rec.chosen == "thin_prune_ptq_t50_s50" and rec.rounds[0].ids == ["thin_prune_ptq_t50_s50", "thin_ptq_t50"]


@pytest.mark.parametrize("limit, keeps, probes", [
    (0.62, [0.6, 0.5], 5),  # the largest keep ratio that meets it, and a margin 0.1 below
    (0.99, [0.95, 0.85], 5),
    (0.2, [0.2], 5),  # only the smallest: no margin below the grid
    (0.1, [0.2], 1),  # none meets it: the smallest, whose trial misses by name
])
def test_keep_ratios_fitted_to_a_latency_limit_by_bisection(limit, keeps, probes):
    asked = []

    def meets(keep):  # one-shot time ~ the keep ratio (as measured on the DS-CNN: 0.6 -> 0.603x)
        asked.append(keep)
        return keep <= limit
    assert space.fit_keeps(meets) == keeps
    assert len(asked) <= probes and len(set(asked)) == len(asked)


def test_keep_ratios_are_fitted_only_to_a_latency_limit_with_thinned_paths_and_none_given():
    from collabopt.pipelines import config as tree_config
    base = {"paths": ["prune_ptq"], "search": {"requirements": {"max_npu_cycles": 1000}}}
    assert space.fits_latency(tree_config.merge(base))
    assert space.keep_ratios(tree_config.merge(base)) == space.DEFAULT_KEEPS  # until the estimates fit them
    given = tree_config.merge({**base, "search": {**base["search"], "thin_keep_ratios": [0.5]}})
    unthinned = tree_config.merge({**base, "search": {**base["search"], "paths": ["prune_ptq"]}})
    no_limit = tree_config.merge({**base, "search": {"requirements": {"max_encoded_weights_bytes": 1000}}})
    assert not any(space.fits_latency(c) for c in (given, unthinned, no_limit))
    fitted = space.with_keeps(tree_config.merge(base), [0.6, 0.5])
    assert [c.id for c in space.of_config(fitted) if c.keep] == [
        "thin_ptq_t60", "thin_ptq_t50", "thin_prune_ptq_t60_s50", "thin_prune_ptq_t60_s75", "thin_prune_ptq_t50_s50",
        "thin_prune_ptq_t50_s75"]
