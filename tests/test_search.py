"""`collabopt search` end to end on tiny data (real TFX, MLMD, TFMOT, Vela): killed and started again
it redoes no finished trial (MLMD CACHED), it stops with a leaf that meets the requirements, an
infeasible requirement set exits 4 naming the misses, and the compiled KFP package of a search round
has trial tasks that depend on no other trial."""
import os

import pytest
import yaml

from collabopt.mlmd import results
from collabopt.cli.search import NOT_MET
from collabopt.components import keys
from collabopt.core.tflite import flatbuffer
from collabopt.search import space
from collabopt.core.artifact_files import TFLITE_FILE
from collabopt.kubeflow import compiler
from collabopt.pipelines import config as tree_config, nodes as pipeline_nodes
from collabopt.search import driver, trials
from collabopt.search.record import Record
from collabopt.tests.cli_processes import collabopt

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

SIGKILL = -9
CONFIG = {"name": "search-test", "paths": ["prune_ptq", "prune_cluster_ptq"],
          "data": {"train_limit": 300, "eval_limit": 100},
          "baseline": {"epochs": 1, "width": 16, "blocks": 1}, "convert": {"representative_samples": 32},
          "search": {"paths": ["prune_ptq"], "sparsities": [0.5, 0.75], "clusters": [8], "per_layer": False,
                     "sensitivity_sample": 100, "epochs": {"min": 1, "max": 1},
                     "requirements": {"max_metric_drop": 0.5, "max_encoded_weights_bytes": 100000}}}


def _all_executions(mlmd):
    store = results.connect(mlmd)
    return {r.name: {e["node"]: e["state"] for e in results.executions(store, r)} for r in results.runs(store)}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search killed in its trial round, started again to the end, then run with an infeasible
    requirement on the same root. Returns [(exit code, log, {run: {node: state}}, search.json) after each]."""
    d = tmp_path_factory.mktemp("search")
    out = []
    infeasible = {**CONFIG, "search": {**CONFIG["search"], "requirements": {"max_npu_cycles": 1, "max_arena_bytes": 1}}}
    # round 0 (inputs and the ptq reference) executes 5 nodes; its 6th is in the trial round
    kill = [("sigkill_after_node", (6,))]
    for i, (cfg, fault) in enumerate([(CONFIG, kill), (CONFIG, []), (infeasible, [])]):
        (d / f"c{i}.yaml").write_text(yaml.safe_dump(cfg))
        code, log = collabopt("search", str(d / f"c{i}.yaml"), "--root", str(d / "root"), log=d / f"s{i}.log",
                              faults=fault)
        record = d / "root" / "search.json"
        out.append((code, log, _all_executions(str(d / "root" / "metadata.sqlite")),
                    Record.load(record) if record.is_file() else None))
        record.unlink(missing_ok=True)
    return out


def test_a_restarted_search_redoes_no_finished_trial(searched):
    (killed, _, after_kill, _), (code, log, after, record), _ = searched
    assert killed == SIGKILL and code == 0, log[-3000:]
    finished = {n for states in after_kill.values() for n, s in states.items() if s == "COMPLETE"}
    assert any(n.startswith("Pruner_") for n in finished)  # the kill came inside the trial round
    second = {r: states for r, states in after.items() if r not in after_kill}
    assert len(second) == 2  # the reference round and the trial round, again
    for states in second.values():
        for node, state in states.items():
            assert state == ("CACHED" if node in finished else "COMPLETE"), (node, state)
    # every node executed exactly once over both processes
    complete = [n for states in after.values() for n, s in states.items() if s == "COMPLETE"]
    assert sorted(complete) == sorted(set(complete))
    assert record.chosen and record.stopped == "met" and not space.misses(record.leaf, record.requirements)
    assert record.epochs_executed == sum(1 for n in complete if n.startswith(("Pruner_", "Clusterer_", "QAT_"))
                                            and n not in finished)  # the second process's share, 1 epoch each
    assert f"chosen: {record.chosen} (1 epoch(s)): " in log


def test_an_infeasible_search_exits_4_with_the_misses(searched):
    code, log, _, record = searched[2]
    assert code == NOT_MET, log[-3000:]
    leaves = {cid: leaf for r in record.rounds for cid, leaf in r.leaves.items()}
    assert record.chosen is None and record.feasible_by_estimate == 0 and leaves
    fewest = min(leaf["npu_cycles"] for leaf in leaves.values())
    smallest = min(leaf["tflm_arena_bytes"] for leaf in leaves.values())  # measured on every trial's leaf
    assert record.best_so_far["misses"] == {"max_npu_cycles": fewest - 1, "max_arena_bytes": smallest - 1}
    assert "no leaf meets every requirement; best so far:" in log
    assert f"no leaf meets max_npu_cycles 1: missed by {fewest - 1:,.4g} (closest: " in log
    assert f"no leaf meets max_arena_bytes 1: missed by {smallest - 1:,.4g} (closest: " in log


def _closure(tasks, name):
    seen, todo = set(), [name]
    while todo:
        for dep in tasks[todo.pop()].get("dependentTasks", []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


PREFIX = {**CONFIG, "search": {**CONFIG["search"], "paths": ["prune_cluster_ptq"], "strategy": "prefix"}}


@pytest.mark.parametrize("config", [CONFIG, PREFIX, {**PREFIX, "search": {**PREFIX["search"], "strategy": "auto"}}],
                         ids=["halving", "prefix", "auto"])
def test_compiled_search_round_has_independent_trials(tmp_path, config):
    spec = compiler.compile_config(config, str(tmp_path / "search.yaml"), search=True)
    tasks = spec["root"]["dag"]["tasks"]
    cands, epochs = trials.first_round(config)  # prefix: each pruning's one-stage screen
    assert [c.id for c in cands] == ["ptq", "prune_ptq_s50", "prune_ptq_s75"] and epochs == 1
    cfg = tree_config.merge(config)
    leaf_tasks = {c.id: set(trials.trial_ids(cfg, c, epochs)) for c in cands}
    assert leaf_tasks["prune_ptq_s50"] == {"Convert_prune_ptq_s50_e1", "NPU_prune_ptq_s50_e1", "Evaluate_prune_ptq_s50_e1"}
    own = {"ptq": set(), "prune_ptq_s50": {"Pruner_s50_e1"}, "prune_ptq_s75": {"Pruner_s75_e1"}}
    for c in cands:
        deps = _closure(tasks, trials.trial_ids(cfg, c, epochs).evaluate)
        others = set().union(*(ids for cid, ids in leaf_tasks.items() if cid not in (c.id, "ptq")))
        assert not deps & others, (c.id, deps & others)  # no other trial's converter, compiler, evaluator
        assert {t for t in deps if t.startswith("Pruner")} == own[c.id]  # only its own fine-tuning


def test_a_later_rung_goes_on_from_the_previous_models(tmp_path):
    cands, _ = trials.first_round(CONFIG)
    rnd = trials.create_round(CONFIG, cands, 2, str(tmp_path), resume={"prune_ptq_s50": ("/m/s50", 1)})
    by_id = {c.id: c for c in rnd.pipeline.components}
    resumed = by_id["Pruner_s50_e1to2"]
    assert resumed.exec_properties["epochs"] == 1 and resumed.exec_properties["schedule"] == "constant"
    assert by_id["Resume_prune_ptq_s50_e1"].exec_properties["artifact_uri"] == "/m/s50"
    assert "Pruner_s75_e2" in by_id and "Pruner" not in by_id  # s75 starts from the baseline; s50 does not
    assert rnd.epochs == {"Pruner_s50_e1to2": 1, "Pruner_s75_e2": 2}


def test_a_later_rung_goes_on_with_the_last_stage(tmp_path):
    s = {**CONFIG["search"], "paths": ["prune_cluster_ptq"], "sparsities": [0.5],
         "epochs": {"min": 1, "max": 2, "eta": 2}, "requirements": {"max_npu_cycles": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**CONFIG, "name": "search-rungs", "search": s}))
    code, log = collabopt("search", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "root"), log=tmp_path / "s.log")
    assert code == NOT_MET, log[-3000:]  # nothing meets 1 cycle: both rungs run
    record = Record.load(tmp_path / "root" / "search.json")
    assert [r.epochs for r in record.rounds] == [1, 2]
    store = results.connect(str(tmp_path / "root" / "metadata.sqlite"))
    nodes = {e["node"]: e for r in results.runs(store) for e in results.executions(store, r)}
    clustered = nodes["SparseClusterer_s50_k8_e1"]["outputs"][keys.CLUSTERED_MODEL_KEY][0].uri
    assert nodes["Resume_prune_cluster_ptq_s50_k8_e1"]["outputs"]["result"][0].uri == clustered
    resumed = nodes["SparseClusterer_s50_k8_e1to2"]
    assert driver._events(store, resumed["id"], ("INPUT",))[keys.MODEL_KEY] == clustered  # noqa: SLF001
    # rung 1 prunes and clusters (1 + 1); rung 2 clusters 1 more epoch; each executed once
    assert record.epochs_spent == record.epochs_executed == 3
    # the second rung's leaf keeps the sparsity and the clusters
    with open(os.path.join(record.rounds[1].leaves["prune_cluster_ptq_s50_k8"]["tflite_uri"], TFLITE_FILE),
              "rb") as f:
        stats = flatbuffer.layer_stats(f.read())
    sparse = {layer["layer"]: layer["max_unique_per_channel"] for layer in stats if layer["sparsity"] >= 0.49}
    assert set(sparse) == {"conv_1", "pw_1", "logits"} and max(sparse.values()) <= 9, stats  # 0 and 8 centroids


def test_a_prefix_search_trains_its_best_group_from_the_baseline(tmp_path):
    s = {**PREFIX["search"], "sparsities": [0.5], "epochs": {"min": 1, "max": 2, "eta": 2},
         "requirements": {"max_npu_cycles": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**PREFIX, "name": "search-prefix", "search": s}))
    code, log = collabopt("search", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "root"), log=tmp_path / "s.log")
    assert code == NOT_MET, log[-3000:]  # nothing meets 1 cycle: the one group runs
    record = Record.load(tmp_path / "root" / "search.json")
    (group,) = record.rounds[1].ids[1:]  # after its screen
    screen = record.rounds[0].ids
    assert record.strategy == "prefix" and [r.epochs for r in record.rounds] == [1, 2]
    assert screen == [group.replace("prune_cluster_ptq", "prune_ptq").rsplit("_", 1)[0]] == record.rounds[1].ids[:1]
    assert "screening round at 1 epoch(s), 1 fine-tuning epochs:" in log and record.stopped == "exhausted"
    store = results.connect(str(tmp_path / "root" / "metadata.sqlite"))
    nodes = {e["node"]: e for r in results.runs(store) for e in results.executions(store, r)}
    assert not [n for n in nodes if n.startswith("Resume_")]
    target = int(screen[0].rsplit("_s", 1)[1]) / 100
    reference = nodes[pipeline_nodes.leaf_ids("ptq").evaluate]
    baseline = driver._events(store, reference["id"], ("INPUT",))[keys.MODEL_KEY]  # noqa: SLF001
    cfg, screened = tree_config.merge(PREFIX), space.Candidate("prune_ptq", target)
    for epochs in (1, 2):  # the screen and the group's own pruning both start from the baseline
        pruner = nodes[pipeline_nodes.stage_id(("prune",), trials.stage_key(cfg, screened, ("prune",), epochs))]
        assert driver._events(store, pruner["id"], ("INPUT",))[keys.MODEL_KEY] == baseline  # noqa: SLF001
    # screening: 1 epoch of pruning; the group: 2 of pruning + 2 of clustering; each executed once
    assert record.epochs_spent == record.epochs_executed == 5
    with open(os.path.join(record.rounds[1].leaves[group]["tflite_uri"], TFLITE_FILE), "rb") as f:
        stats = flatbuffer.layer_stats(f.read())
    sparse = {layer["layer"]: layer["max_unique_per_channel"] for layer in stats if layer["sparsity"] >= target - 0.01}
    assert set(sparse) == {"conv_1", "pw_1", "logits"} and max(sparse.values()) <= 9, stats  # 0 and 8 centroids


def test_a_time_limit_below_ptqs_is_met_by_a_thinned_leaf(tmp_path):
    """No search.paths and a max_npu_inference_time_s below the ptq leaf's: the time limit brings the
    thin paths in, their keep ratios are fitted to it (no search.thin_keep_ratios), no unthinned
    candidate can meet it by estimate, and the search answers with a thinned leaf (the ChannelPruner
    at the candidate's keep ratio, one node per keep ratio) that meets it."""
    from collabopt.core.stages import DataSpec
    from collabopt.core.model import keras_io
    from collabopt.search import sensitivity
    from collabopt.search.record import KEEP_RATIO
    from collabopt.tests.helpers import fashion_mnist_examples, tiny_model

    model, examples = tiny_model(tmp_path / "model", width=32), fashion_mnist_examples(tmp_path / "examples", 300, 100)
    ptq = sensitivity.measure(keras_io.load_model(model), sensitivity.Sample(DataSpec(examples), eval_limit=10),
                              str(tmp_path / "ptq"))["inference_time_s"]
    limit = 0.9 * ptq
    cfg = {**CONFIG, "name": "search-thin", "paths": ["prune_ptq"], "baseline": {"model_uri": model},
           "examples": {"uri": examples},
           "search": {"sparsities": [0.5], "per_layer": False, "sensitivity_sample": 100,
                      "epochs": {"min": 1, "max": 1},
                      "requirements": {"max_metric_drop": 0.5, "max_npu_inference_time_s": limit}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, log = collabopt("search", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "root"), log=tmp_path / "s.log")
    assert code == 0, log[-3000:]
    record = Record.load(tmp_path / "root" / "search.json")
    keeps = record.thin_keep_ratios
    assert f"collabopt search: thin keep ratios {', '.join(map(str, keeps))}, fitted to max_npu_inference_time_s" in log
    tokens = [space.keep_token(k) for k in keeps]
    assert sorted(record.estimates) == sorted(["prune_ptq_s50", "ptq"] + [f"thin_ptq_{t}" for t in tokens]
                                              + [f"thin_prune_ptq_{t}_s50" for t in tokens])
    assert all(record.estimates[f"thin_ptq_{t}"]["inference_time_s"] <= limit for t in tokens)
    assert record.feasible_by_estimate >= 2 and all(cid.startswith("thin_") for r in record.rounds for cid in r.ids)
    assert record.chosen.startswith("thin_") and record.leaf[KEEP_RATIO] in keeps
    assert record.leaf["inference_time_s"] <= limit < record.reference["inference_time_s"]
    assert not space.misses(record.leaf, record.requirements)
    states = {n: s for states in _all_executions(str(tmp_path / "root" / "metadata.sqlite")).values()
              for n, s in states.items()}
    thinned = {t for r in record.rounds for cid in r.ids for t in tokens if f"_{t}_" in f"{cid}_"}
    # one thinning per keep ratio, shared by its thinned candidates
    assert {n: st for n, st in states.items() if n.startswith("ChannelPruner")} == {
        f"ChannelPruner_{t}_e1": "COMPLETE" for t in thinned}
    assert f"chosen: {record.chosen} (1 epoch(s)): channels kept {round(record.leaf[KEEP_RATIO] * 100)}%, " in log
