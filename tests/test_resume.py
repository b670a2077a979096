"""Nothing lost, nothing hangs: a `collabopt run` killed (SIGKILL) after every node and inside a
fine-tuning stage is run again until it completes; each rerun executes only what did not finish
(cached nodes are not executed again), the fine-tuning resumes from its last epoch checkpoint, and
the killed runs' leftovers are marked abandoned."""
import os
import re

import pytest
import yaml

from collabopt.mlmd import results
from collabopt import runners
from collabopt.cli import main
from collabopt.core import deploy
from collabopt.tests import faults
from collabopt.tests.cli_processes import collabopt, printed_table, run_id

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

# The smallest real tree: one leaf (ptq), seven nodes, three short baseline epochs, pushed.
NODES = ["FashionMnistExampleGen", "BaselineTrainer", "Convert_ptq", "NPU_ptq", "Evaluate_ptq", "Push_ptq", "Reporter"]
SIGKILL = -9


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """The run crashed over and over: after the example gen, in the baseline's second epoch, then
    after every node; the last run finishes. Returns (root, mlmd, [(env, exit code, log, run id)])."""
    d = tmp_path_factory.mktemp("crash")
    config = {"name": "crash", "paths": ["ptq"], "data": {"train_limit": 300, "eval_limit": 100},
              "baseline": {"epochs": 3, "width": 16, "blocks": 1}, "npu": {"targets": ["ethos-u55-128"]},
              "push": {"destination": str(d / "deployed")}}
    (d / "crash.yaml").write_text(yaml.safe_dump(config))
    kills = [("sigkill_after_node", (1,)), ("sigkill_after_epoch", ("baseline", 2))] + \
        [("sigkill_after_node", (1,))] * (len(NODES) - 1) + [None]
    out = []
    for i, kill in enumerate(kills):
        code, log = collabopt("run", str(d / "crash.yaml"), "--root", str(d / "root"), log=d / f"run{i}.log",
                              faults=[kill] if kill else [])
        out.append((kill, code, log, run_id(log)))
    return d, str(d / "root" / "metadata.sqlite"), out


def by_run(mlmd):
    store = results.connect(mlmd)
    return store, {r.name: {e["node"]: e for e in results.executions(store, r)} for r in results.runs(store)}


def test_each_rerun_executes_only_what_did_not_finish(crashed):
    _, mlmd, runs = crashed
    assert [code for _, code, _, _ in runs] == [SIGKILL] * (len(runs) - 1) + [0]
    _, execs = by_run(mlmd)
    assert list(execs) == [rid for *_, rid in runs]  # one MLMD run per process, in order
    # run i reused (CACHED) what earlier runs finished and executed one node: the trainer twice
    # (killed inside it, then resumed), the last run none
    executed = [NODES[0], "BaselineTrainer", *NODES[1:], None]
    for i, ((kill, _, log, rid), node) in enumerate(zip(runs, executed)):
        done = NODES[:NODES.index(node)] if node else NODES
        expected = {n: "CACHED" for n in done}
        if node:
            expected[node] = "CANCELED" if kill[0] == "sigkill_after_epoch" else "COMPLETE"
            assert "test fault: SIGKILL after " in log
        assert {n: e["state"] for n, e in execs[rid].items()} == expected, (i, kill)
    # every node executed exactly once, but the trainer: once killed (abandoned), once to the end
    counts = {}
    for run in execs.values():
        for node, e in run.items():
            if e["state"] != "CACHED":
                counts.setdefault(node, []).append(e["state"])
    assert counts == {n: ["COMPLETE"] for n in NODES} | {"BaselineTrainer": ["CANCELED", "COMPLETE"]}


def test_the_killed_fine_tuning_resumes_from_its_last_epoch(crashed, capsys):
    d, mlmd, runs = crashed
    (_, _, killed_log, killed), (_, _, resumed_log, resumed) = runs[1], runs[2]
    assert "[baseline] epoch 2/3" in killed_log and "[baseline] epoch 3/3" not in killed_log
    assert "[baseline] resumed at epoch 3/3 from its checkpoint" in resumed_log
    assert "[baseline] epoch 1/3" not in resumed_log and "[baseline] epoch 2/3" not in resumed_log
    assert "[baseline] epoch 3/3" in resumed_log
    _, execs = by_run(mlmd)
    trainer = execs[resumed]["BaselineTrainer"]
    assert trainer["state"] == "COMPLETE"
    node_dir = os.path.dirname(os.path.dirname(trainer["outputs"]["model"][0].uri))
    assert not [f for f in os.listdir(node_dir) if f.startswith(".checkpoint-")]  # deleted after success
    # the killed execution: CANCELED (MLMD has no ABANDONED), with why, by the next run
    abandoned = execs[killed]["BaselineTrainer"]
    assert abandoned["state"] == "CANCELED" and not abandoned["outputs"].get("model")
    assert abandoned["reason"].startswith(f"run {killed} stopped while this ran (its process was killed")
    assert f"marked by run {resumed} at " in abandoned["reason"]
    main(["report", "--mlmd", mlmd, "--run", killed])
    assert f"ABANDONED BaselineTrainer: run {killed} stopped while this ran" in capsys.readouterr().out


def test_the_last_run_prints_its_own_leaves_and_the_crashed_runs_are_abandoned(crashed):
    d, mlmd, runs = crashed
    *_, (_, _, log, last) = runs
    head, row = printed_table(log)
    assert row.startswith("ptq ") and row.endswith(" yes") and "ethos-u55-128 cycles" in head
    store = results.connect(mlmd)
    summaries = {s["run"]: s for s in results.run_summaries(store, lease=lambda r: runners.lease(mlmd, r))}
    assert [summaries[rid]["state"] for *_, rid in runs] == ["abandoned"] * (len(runs) - 1) + ["complete"]
    assert summaries[last]["leaves"] == 1 and summaries[last]["problems"] == []
    assert [n for n, _, _ in summaries[runs[1][3]]["problems"]] == ["BaselineTrainer"]
    leaf = {l["path"]: l for l in results.leaves(store, results.run_by_id(store, last))}["ptq"]
    assert leaf["pushed"]  # pushed by the run killed right after its push, reused (CACHED) since
    deployed = deploy.last_pushed(d / "deployed", "ptq")
    assert deploy.versions(d / "deployed", "ptq") == [deployed["version"]]  # pushed once
    assert deployed["int8_accuracy"] == leaf["int8_accuracy"]
    assert not os.listdir(d / "root" / ".runs")  # every lock gone: the runs ended or were found dead


def test_pruning_resumes_with_its_schedule(tmp_path, caplog):
    """In process, the pruner's fit stopped after epoch 1 (an exception: the checkpoint is kept) and
    run again resumes at epoch 2 with the pruning step restored: the polynomial schedule reaches its
    target at step 5 of 8, which a restarted step count (0-3 in the second epoch) would never reach."""
    import logging

    import numpy as np

    from collabopt.core.techniques import optimize
    from collabopt.core.model import train
    from collabopt.core.tfenv import keras
    from collabopt.tests.helpers import dense_model

    x = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    y = np.arange(256) % 10
    backup = tmp_path / "backup"

    def prune():
        keras.utils.set_random_seed(0)
        with train.resumable(backup):
            return optimize.prune(dense_model(), x, y, target_sparsity=0.5, epochs=2, batch_size=64)

    caplog.set_level(logging.INFO, "collabopt")
    remove = faults.raise_after_epoch("prune", 1, RuntimeError("stopped after epoch 1"))
    try:
        with pytest.raises(RuntimeError, match="stopped after epoch 1"):
            prune()
    finally:
        remove()
    assert os.listdir(backup / "prune") and "[prune] epoch 1/2" in caplog.text
    assert re.search(r"\[prune\] epoch 1/2 .* \(\d+ s per epoch, ~\d+ s left\)", caplog.text)  # where it is
    caplog.clear()
    pruned = prune()
    assert "[prune] resumed at epoch 2/2 from its checkpoint" in caplog.text and "epoch 1/2" not in caplog.text
    kernel = pruned.layers[-1].get_weights()[0]
    assert float(np.mean(kernel == 0)) == pytest.approx(0.5, abs=0.01)
    assert not backup.exists()  # deleted once the block ended normally


def test_a_transient_error_fails_the_execution_uncached_and_the_next_run_executes_it(tmp_path):
    """An error that is not the path's own (TensorFlow out of memory while pruning) fails the Pruner's
    execution (FAILED, not a cached failed path) and the run (exit 1, the node named); the same command
    run again executes the Pruner again and produces the leaf."""
    config = {"name": "transient", "paths": ["prune_ptq"], "data": {"train_limit": 300, "eval_limit": 100},
              "baseline": {"epochs": 1, "width": 16, "blocks": 1}, "prune": {"epochs": 1},
              "npu": {"targets": ["ethos-u55-128"]}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    argv = ("run", str(tmp_path / "t.yaml"), "--root", str(tmp_path / "root"))
    code, log = collabopt(*argv, log=tmp_path / "oom.log", faults=[("oom_after_epoch", ("prune", 1))])
    assert code == 1 and "collabopt run: node Pruner failed: ResourceExhaustedError: OOM when allocating tensor (test fault after epoch 1)\n" in log, log[-2000:]
    code, log2 = collabopt(*argv, log=tmp_path / "again.log")
    assert code == 0, log2[-2000:]
    # a run says where it is: each node executed starts and ends with its time, each epoch too
    assert "(2 leaves, 11 nodes)" in log2 and re.search(r"collabopt run: 11 nodes done in \d+", log2)
    assert "Pruner: started" in log2 and re.search(r"Pruner: done in \d+ s", log2)
    assert "BaselineTrainer: started" not in log2  # cached: it did not run
    assert re.search(r"\[prune\] epoch 1/1 .*\(\d+ s per epoch\)", log)  # its epoch, before the error
    assert "[prune] all 1 epochs restored from its checkpoint" in log2  # the epoch was not lost
    _, execs = by_run(str(tmp_path / "root" / "metadata.sqlite"))
    failed, again = execs[run_id(log)], execs[run_id(log2)]
    assert failed["Pruner"]["state"] == "FAILED" and "Convert_prune_ptq" not in failed
    assert again["Pruner"]["state"] == "COMPLETE" and again["BaselineTrainer"]["state"] == "CACHED"
    assert again["Evaluate_prune_ptq"]["state"] == "COMPLETE"
