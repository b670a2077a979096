"""One path's failure does not hide the others (issue 11): a path whose stage fails at run time is a
result, as TFX's "not blessed" is: its nodes COMPLETE with their outputs marked failed, the other
paths finish, the report, `collabopt report` and `collabopt runs` list it with why, and `collabopt
run` exits with 3; the same on the Beam runner and, compiled for Kubeflow Pipelines, task by task
(where a FAILED task would stop every task after it). The failure is real: a model with Rescaling +
Normalization layers, which TFMOT cannot prune, and `prune: {strict: true}`; clustering passes such
layers through."""
import html
import json
import os

import pytest
import yaml

from collabopt.mlmd import results
from collabopt.cli import main
from collabopt.components import keys
from collabopt.core.model import keras_io
from collabopt.tests.helpers import by_node, lineage
from collabopt.tests.kfp_fixtures import compile_config
from collabopt.tests.test_kfp_emulator import task_env  # noqa: F401 - a fixture
from collabopt.tests.test_layer_support import preprocessing

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

WHY = ("Pruner: prune: 2 layer(s) TFMOT cannot prune (strict: true): scale (Rescaling is not in TFMOT's pruning "
       "registry); norm (Normalization is not in TFMOT's pruning registry). Exclude them with prune.exclude_layers, "
       "or drop strict to leave them out.")
FAILED = ["prune_ptq", "prune_cluster_ptq"]  # both under the Pruner
FINE = ["ptq", "cluster_ptq"]
BEAM_NODES = ["ExamplesImporter", "BaselineImporter", "Preflight", "Pruner", "Clusterer", "Reporter",
              *[f"{node}_{path}" for path in ("ptq", "prune_ptq", "cluster_ptq") for node in ("Convert", "Evaluate", "NPU")]]
TARGET = "ethos-u55-128"


def _run(capsys, *argv):
    """`collabopt <argv>` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def broken_config(tmp_path_factory, examples_uri):
    """A tree whose prune paths fail and whose other paths do not."""
    model = str(tmp_path_factory.mktemp("model"))
    keras_io.save_model(preprocessing(), os.path.join(model, keras_io.SERVING_DIR))
    return {"name": "failed-paths", "paths": ["prune_ptq", "prune_cluster_ptq", "cluster_ptq"],
            "examples": {"uri": examples_uri}, "baseline": {"model_uri": model},
            "data": {"train_limit": 300, "eval_limit": 100}, "prune": {"epochs": 1, "strict": True},
            "cluster": {"epochs": 1}, "npu": {"targets": [TARGET]}}


@pytest.fixture(scope="module")
def broken(tmp_path_factory, broken_config):
    """(config file, root) of broken_config."""
    tmp = tmp_path_factory.mktemp("failed-paths")
    (tmp / "broken.yaml").write_text(yaml.safe_dump(broken_config))
    return str(tmp / "broken.yaml"), str(tmp / "root")


def test_the_other_paths_finish_and_every_listing_names_the_failed_ones(broken, capsys):
    config, root = broken
    code, out, err = _run(capsys, "run", config, "--root", root)
    assert code == 3, err[-3000:]
    assert err.splitlines()[-1] == ("collabopt run: finished, 2 of 4 paths failed: prune_ptq, prune_cluster_ptq "
                                    "(why: above and in the report)")
    # The printed table has the leaves that finished; the failed paths follow it, with why.
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("path  "))
    end = lines.index("", start)
    assert [row.split()[0] for row in lines[start + 1:end]] == FINE
    assert lines[end + 1:end + 3] == [f"FAILED path {p}: {WHY}" for p in FAILED]

    # MLMD: every node of the failed paths COMPLETE, each output marked failed with the Pruner's reason.
    mlmd = os.path.join(root, "metadata.sqlite")
    store = results.connect(mlmd)
    execs = {e["node"]: e for e in results.executions(store)}
    for node in ("Pruner", "SparseClusterer", *(f"{kind}_{p}" for p in FAILED for kind in ("Convert", "NPU",
                                                                                          "Evaluate"))):
        assert execs[node]["state"] == "COMPLETE", node
        for arts in execs[node]["outputs"].values():
            (art,) = arts
            assert results.props(art)[keys.FAILED] == 1 and results.props(art)[keys.ERROR] == WHY, node
    assert not os.listdir(execs["Pruner"]["outputs"][keys.PRUNED_MODEL_KEY][0].uri)  # no model: nothing ran
    blessing = results.props(execs["Evaluate_prune_ptq"]["outputs"][keys.BLESSING_KEY][0])
    assert blessing[keys.BLESSED] == 0 and json.loads(blessing[keys.REASONS]) == [WHY]
    assert results.run_state(store, results.latest_run(store)) == "complete"

    # collabopt report --format json: every leaf, the failed ones with failed/error and no numbers.
    code, out, _ = _run(capsys, "report", "--root", root, "--format", "json")
    leaves = {l["path"]: l for l in json.loads(out)}
    assert code == 0 and sorted(leaves) == sorted(FINE + FAILED)
    for p in FINE:
        assert not leaves[p]["failed"] and leaves[p]["error"] is None
        assert 0 < leaves[p]["int8_accuracy"] <= 1 and leaves[p]["npu"][TARGET]["cycles"] > 0
    for p in FAILED:
        assert leaves[p]["failed"] and leaves[p]["error"] == WHY and not leaves[p]["blessed"]
        assert leaves[p]["int8_accuracy"] is None and leaves[p]["npu"] == {}
        assert json.load(open(os.path.join(leaves[p]["uri"], "leaf.json"))) == {
            "path": p, "failed": True, "error": WHY, "blessed": False, "reasons": [WHY]}

    # The run's HTML report: the leaves that finished, and the failed paths named with why.
    page = open(os.path.join(root, "report.html")).read()
    failed_table = page[page.index("<h2 id='failed'>Failed paths</h2>"):]
    failed_table = failed_table[:failed_table.index("</table>")]
    assert failed_table.count(html.escape(WHY)) == 2
    assert "<td class=\"l\">prune -&gt; PTQ</td>" in failed_table
    leaf_table = page[page.index("<h2 id='leaves'>"):page.index("<h2 id='failed'>")]
    assert "prune -&gt;" not in leaf_table and "cluster -&gt; PTQ" in leaf_table

    # collabopt runs: the finished leaves counted, the failed paths named.
    code, out, _ = _run(capsys, "runs", "--root", root)
    (row,) = out.splitlines()[1:]
    assert row.split()[4:] == ["complete", "2", "path:prune_ptq,", "path:prune_cluster_ptq"]


def test_a_failure_is_cached_and_no_cache_executes_it_again(broken, capsys):
    """The failure is deterministic on the same inputs and parameters: the cache keeps it (as it keeps
    a 'not blessed'); --no-cache executes the failed node again."""
    config, root = broken
    mlmd = os.path.join(root, "metadata.sqlite")
    if not os.path.exists(mlmd):
        _run(capsys, "run", config, "--root", root)
    first = {e["node"]: e for e in results.executions(results.connect(mlmd))}
    for argv, state in ((["run", config, "--root", root], "CACHED"),
                        (["run", config, "--root", root, "--no-cache"], "COMPLETE")):
        code, out, err = _run(capsys, *argv)
        assert code == 3, err[-3000:]
        assert f"FAILED path prune_ptq: {WHY}" in out.splitlines()
        pruner = {e["node"]: e for e in results.executions(results.connect(mlmd))}["Pruner"]
        assert pruner["state"] == state and pruner["id"] != first["Pruner"]["id"]
        (art,) = pruner["outputs"][keys.PRUNED_MODEL_KEY]
        assert results.props(art)[keys.ERROR] == WHY


def test_beam_runner_runs_on_past_a_failed_path_with_lineage(broken_config, tmp_path):
    """BeamDagRunner: one COMPLETE execution per component, a stage's lineage from the imported
    baseline to the NPU model, and the failed path a result as on the local runner."""
    from collabopt import runners
    from collabopt.pipelines import tree
    pipeline_root, mlmd = runners.paths(tmp_path)
    runners.run(tree.create_pipeline({**broken_config, "paths": ["prune_ptq", "cluster_ptq"]}, pipeline_root, mlmd),
                "beam")
    store, nodes = by_node(mlmd)
    assert sorted(nodes) == sorted(BEAM_NODES)  # one execution per component
    assert {n: e["state"] for n, e in nodes.items()} == {n: "COMPLETE" for n in BEAM_NODES}
    npu = nodes["NPU_cluster_ptq"]["outputs"][keys.NPU_MODEL_KEY][0]
    assert lineage(store, npu.id) == ["NPU_cluster_ptq", "Convert_cluster_ptq", "Clusterer", "BaselineImporter"]
    leaves = {l["path"]: l for l in results.leaves(store)}
    assert leaves["prune_ptq"]["error"] == WHY and not leaves["ptq"]["failed"] and not leaves["cluster_ptq"]["failed"]


def test_kubeflow_tasks_pass_a_failed_path_on_as_complete_tasks(broken_config, tmp_path, task_env):  # noqa: F811
    """Compiled for KFP and run task by task through its container entrypoint: the failed Pruner task
    and the tasks after it COMPLETE (a FAILED task would stop them all, and the report), each output's
    metadata carries the failure. (The prune path only, to the NPU task: the local run above shows the
    evaluator and the report; these tasks cost ~15 s each here.)"""
    from collabopt.kubeflow import emulator
    package = str(tmp_path / "broken-kfp.yaml")
    compile_config({**broken_config, "paths": ["prune_ptq"]}, package)
    chain = {"Pruner": "pruned_model", "Convert_prune_ptq": "tflite_model", "NPU_prune_ptq": "npu_model"}
    tasks = emulator.run_compiled_locally(package, str(tmp_path / "kfp"), str(tmp_path / "kfp.sqlite"), workers=2,
                                          env=task_env, tasks=["ExamplesImporter", "BaselineImporter", "Preflight", *chain])["tasks"]
    assert {t: r["state"] for t, r in tasks.items()} == {t: "COMPLETE" for t in tasks} and set(chain) <= set(tasks)
    for task, key in chain.items():
        metadata = tasks[task]["outputs"][key]["metadata"]
        assert metadata[keys.FAILED] == 1 and metadata[keys.ERROR] == WHY, task  # KFP keeps numbers as floats
