"""A compiled package run without a cluster (kubeflow.emulator): task by task through the container
entrypoint KFP uses, to the NPU model, with the MLMD lineage of a local run; importers, trigger
conditions, a failing task, and an executor whose component cannot be found."""
import json
import logging
import os
import re
import sys
import tempfile

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2

from collabopt.mlmd import results
from collabopt.core import deploy
from collabopt.kubeflow import KfpError, emulator
from collabopt.kubeflow.compiler import load_package, schema_title
from collabopt.kubeflow.emulator_mlmd import component_class

from collabopt.tests.helpers import lineage  # the local runs' own lineage walk
from collabopt.tests.kfp_fixtures import RUN_CONFIG, compile_config, packages, param_package  # noqa: F401

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


@pytest.fixture(scope="module")
def task_env():
    """This machine sets PYTHONDONTWRITEBYTECODE, so every task would compile TF/TFX again (~18 s a task);
    the image has them compiled at build time (~7 s). The tasks cache bytecode in /tmp instead (outside
    the venv and the repo; stale entries are recompiled by Python's own mtime check)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return dict(env, PYTHONPYCACHEPREFIX=os.path.join(tempfile.gettempdir(), "collabopt-kfp-test-pycache"))


@pytest.fixture(scope="module")
def compiled_run(packages, tmp_path_factory, task_env):
    d = tmp_path_factory.mktemp("kfp_run")
    mlmd = str(d / "metadata.sqlite")
    result = emulator.run_compiled_locally(packages["run"][0], str(d / "root"), mlmd, workers=2, env=task_env)
    return result, mlmd


def test_compiled_demo_runs_task_by_task_to_the_pushed_leaves(compiled_run, packages):
    result, _ = compiled_run
    tasks, spec = result["tasks"], packages["run"][1]
    assert set(tasks) == set(spec["root"]["dag"]["tasks"])
    skipped = {t for t, r in tasks.items() if r["state"] == "SKIPPED"}
    assert skipped == {"Push_ptq"} and "is false" in tasks["Push_ptq"]["reason"]  # gzip > 24,000 B: not blessed
    assert all(r["state"] == "COMPLETE" for t, r in tasks.items() if t not in skipped)
    targets = RUN_CONFIG["npu"]["targets"]
    for leaf in RUN_CONFIG["paths"]:
        npu = tasks[f"NPU_{leaf}"]["outputs"]["npu_model"]
        for target in targets:
            assert os.path.isfile(os.path.join(npu["uri"], target, "model_vela.tflite")), (leaf, target)
        assert npu["metadata"]["npu_op_pct"] == 100.0
        assert os.path.isfile(os.path.join(tasks[f"Convert_{leaf}"]["outputs"]["tflite_model"]["uri"],
                                           "model.tflite"))
    # The destination is a pipeline parameter; the run took its default.
    assert spec["root"]["dag"]["tasks"]["Push_ptq"]["inputs"]["parameters"]["destination"] == {
        "componentInputParameter": "push_destination"}
    destination = spec["root"]["inputDefinitions"]["parameters"]["push_destination"]["defaultValue"]
    assert os.listdir(destination) == ["prune_cluster_pcqat"]  # the blessed leaf
    leaf = "prune_cluster_pcqat"
    pushed = tasks[f"Push_{leaf}"]["outputs"]["pushed_model"]["metadata"]
    assert pushed["pushed"] == 1.0 and pushed["pushed_destination"].startswith(os.path.join(destination, leaf))
    latest = deploy.deployed_folder(destination, leaf)  # the version LATEST names
    assert os.path.isfile(os.path.join(latest, "model.tflite"))
    assert os.path.isfile(os.path.join(latest, "npu", targets[0], "model_vela.tflite"))
    assert os.path.isfile(os.path.join(tasks["Reporter"]["outputs"]["report"]["uri"], "report.html"))
    # The executor input is KFP's: upstream artifacts with their MLMD id, type and metadata; output
    # URIs under <root>/<pipeline>/<run>/<task>/; parameters as JSON values.
    task_dir = os.path.join(result["run_root"], "Push_prune_cluster_pcqat")
    with open(os.path.join(task_dir, "executor_input.json")) as f:
        ex_in = json.load(f)
    tfl = ex_in["inputs"]["artifacts"]["tflite_model"]["artifacts"][0]
    assert schema_title(tfl["type"]) == "collabopt.TFLiteModel" and tfl["name"].isdigit()
    assert tfl["uri"] == tasks["Convert_prune_cluster_pcqat"]["outputs"]["tflite_model"]["uri"]
    assert tfl["metadata"]["mode"] == "qat"
    assert ex_in["inputs"]["artifacts"]["blessing"]["artifacts"][0]["metadata"]["blessed"] == 1.0
    assert ex_in["inputs"]["parameterValues"]["destination"] == destination
    assert ex_in["outputs"]["artifacts"]["pushed_model"]["artifacts"][0]["uri"] == f"{task_dir}/pushed_model"
    assert ex_in["outputs"]["outputFile"] == f"{task_dir}/executor_output.json"
    with open(os.path.join(result["run_root"], "NPU_prune_cluster_pcqat", "executor_input.json")) as f:
        assert json.loads(json.load(f)["inputs"]["parameterValues"]["targets"]) == targets


def test_mlmd_lineage_as_in_a_local_run(compiled_run):
    result, mlmd = compiled_run
    store = results.connect(mlmd)
    execs = results.executions(store)
    ran = sorted(t for t, r in result["tasks"].items() if r["state"] == "COMPLETE")
    assert sorted(e["node"] for e in execs) == ran and {e["state"] for e in execs} == {"COMPLETE"}
    # Contexts, types and events in LocalDagRunner's shape.
    run_ctx, = store.get_contexts_by_type("pipeline_run")
    assert run_ctx.name == result["run_id"]
    assert [c.name for c in store.get_parent_contexts_by_context(run_ctx.id)] == [RUN_CONFIG["name"]]
    for e in execs:
        kinds = {store.get_context_types_by_id([c.type_id])[0].name for c in store.get_contexts_by_execution(e["id"])}
        assert kinds == {"pipeline", "pipeline_run", "node"}
    [npu_ex] = [e for e in execs if e["node"] == "NPU_prune_cluster_pcqat"]
    [execution] = store.get_executions_by_id([npu_ex["id"]])
    assert execution.type == "collabopt.components.npu_compiler.component.NPUCompiler"
    types = {t.name for t in store.get_artifact_types()}  # TYPE_NAMEs, as LocalDagRunner registers them
    assert {"Examples", "Model", "collabopt.TFLiteModel", "collabopt.NPUModel", "collabopt.LeafEvaluation"} <= types
    assert all(t.startswith("collabopt.") or "." not in t for t in types), types
    npu = npu_ex["outputs"]["npu_model"][0]
    assert lineage(store, npu.id) == ["NPU_prune_cluster_pcqat", "Convert_prune_cluster_pcqat", "PCQAT",
                                       "SparseClusterer", "Pruner", "BaselineTrainer"]
    # No artifact registered twice: consumers point at their producer's artifact.
    assert len(store.get_artifacts()) == sum(len(a) for e in execs for a in e["outputs"].values())
    # The numbers the components recorded, typed as they recorded them (report's formats need ints).
    props = results.props(npu)
    assert props["npu_op_pct"] == 100 and isinstance(props["npu_cycles"], int) and props["npu_cycles"] > 0
    conv = results.props(next(e for e in execs if e["node"] == "Convert_prune_cluster_pcqat")["outputs"]
                        ["tflite_model"][0])
    assert conv["preservation_ok"] == 1 and conv["max_unique_per_channel"] <= 8
    assert isinstance(conv["int8_accuracy"], float) and conv["int8_accuracy"] > 0.5


def test_a_bad_run_parameter_fails_its_task_with_the_config_schema_message(packages, tmp_path, task_env):
    """A --param value reaches the container unchecked here (submit checks it, the emulator does not):
    the executor checks it again and the task fails with the config schema's message."""
    mlmd = str(tmp_path / "m.sqlite")
    with pytest.raises(KfpError, match=r"(?s)^task FashionMnistExampleGen failed: exit code 1; log .*"
                                       r"data\.train_limit: -1 is less than the minimum of 0"):
        emulator.run_compiled_locally(packages["run"][0], str(tmp_path / "root"), mlmd,
                                      params=["data_train_limit=-1"], tasks={"FashionMnistExampleGen"}, env=task_env)
    store = results.connect(mlmd)
    assert [(e["node"], e["state"]) for e in results.executions(store)] == [("FashionMnistExampleGen", "FAILED")]


def test_importers_feed_the_containers(compiled_run, tmp_path, task_env):
    """An Examples and a Model importer (reimport=False) ahead of a TFLiteConverter container."""
    result, _ = compiled_run
    outs = result["tasks"]
    cfg = {**RUN_CONFIG, "name": "kfp-importers", "paths": ["ptq"],
           "examples": {"uri": outs["FashionMnistExampleGen"]["outputs"]["examples"]["uri"]},
           "baseline": {"model_uri": outs["BaselineTrainer"]["outputs"]["model"]["uri"]}}
    pkg = tmp_path / "importers.yaml"
    compile_config(cfg, pkg)
    mlmd = str(tmp_path / "m.sqlite")
    first = emulator.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd, tasks={
        "ExamplesImporter", "BaselineImporter", "Convert_ptq"}, env=task_env)
    assert first["tasks"]["Convert_ptq"]["state"] == "COMPLETE"
    assert first["tasks"]["Convert_ptq"]["outputs"]["tflite_model"]["metadata"]["mode"] == "ptq"
    store = results.connect(mlmd)
    [examples] = store.get_artifacts_by_type("Examples")
    assert examples.properties["split_names"].string_value == '["train", "eval"]'  # the importer's metadata
    execs = {e["node"]: e for e in results.executions(store)}
    [conv_ex] = store.get_executions_by_id([execs["Convert_ptq"]["id"]])
    assert {store.get_execution_types_by_id([store.get_executions_by_id([execs[n]["id"]])[0].type_id])[0].name
            for n in ("ExamplesImporter", "BaselineImporter")} == {"tfx.dsl.components.common.importer.Importer"}
    inputs = {e.path.steps[0].key: e.artifact_id for e in store.get_events_by_execution_ids([conv_ex.id])
              if e.type == metadata_store_pb2.Event.INPUT}
    assert inputs == {"examples": examples.id, "model": execs["BaselineImporter"]["outputs"]["result"][0].id}
    with pytest.raises(KfpError, match="missing upstream"):
        emulator.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd, tasks={"Convert_ptq"})
    again = emulator.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd,
                                          tasks={"ExamplesImporter", "BaselineImporter"})
    assert again["tasks"]["ExamplesImporter"]["outputs"]["result"]["name"] == str(examples.id)  # reused
    assert len(store.get_artifacts_by_type("Examples")) == 1


def _with_task(package, path, name, command, args=()):
    """`package` with one more container task `name` (no inputs), written to `path`."""
    spec = load_package(package)
    spec["root"]["dag"]["tasks"][name] = {"componentRef": {"name": name}, "taskInfo": {"name": name}}
    spec["components"][name] = {"executorLabel": f"{name}_executor"}
    spec["deploymentSpec"]["executors"][f"{name}_executor"] = {"container": {
        "image": "x", "command": list(command), "args": list(args)}}
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_failing_task_fails_the_run_and_its_execution(tmp_path, param_package):
    pkg = _with_task(param_package, tmp_path / "broken.yaml", "Broken",
                     ["python", "-c", "import sys; sys.exit('no such model: gs://nowhere')"])
    with pytest.raises(KfpError, match=r"task Broken failed: exit code 1(.|\n)*no such model"):
        emulator.run_compiled_locally(pkg, str(tmp_path / "root"), str(tmp_path / "m.sqlite"))
    store = results.connect(str(tmp_path / "m.sqlite"))
    assert {e["node"]: e["state"] for e in results.executions(store)}["Broken"] == "FAILED"


def test_an_unimportable_component_module_stops_the_run_naming_the_executor(tmp_path, param_package, monkeypatch):
    """The execution type is the component class; if collabopt's component module does not import, the
    run stops there (before, the task ran and was recorded under the executor's path as its type)."""
    executor = "collabopt.components.pruner.executor.Executor"
    pkg = _with_task(param_package, tmp_path / "p.yaml", "Prune",
                     ["python", "-c", "open('ran', 'w')"], ["--executor_class_path", executor])
    monkeypatch.setitem(sys.modules, "collabopt.components.pruner.component", None)  # its import fails
    with pytest.raises(KfpError, match=re.escape(f"executor {executor}: its component module "
                                                 "collabopt.components.pruner.component does not import")):
        emulator.run_compiled_locally(pkg, str(tmp_path / "root"), str(tmp_path / "m.sqlite"))
    assert not [p.name for p in (tmp_path / "root").rglob("*") if p.name in ("ran", "log.txt")]  # never started
    store = results.connect(str(tmp_path / "m.sqlite"))
    assert {e["node"]: e["state"] for e in results.executions(store)} == {"ModelImporter": "COMPLETE"}


def test_execution_types_fall_back_only_for_other_packages_executors(caplog):
    assert component_class("collabopt.components.pruner.executor.Executor") == \
        "collabopt.components.pruner.component.Pruner"
    with pytest.raises(KfpError, match="no component in collabopt.components.pruner.component runs it"):
        component_class("collabopt.components.pruner.executor.NotTheExecutor")
    theirs = "thirdparty.components.trainer.executor.Executor"
    with caplog.at_level(logging.WARNING, logger="collabopt.kubeflow.emulator_mlmd"):
        assert component_class(theirs) == theirs
    [record] = caplog.records
    assert record.levelno == logging.WARNING and theirs in record.getMessage()
    assert "thirdparty.components.trainer.component does not import" in record.getMessage()


def test_importer_resolves_its_uri_from_the_run_parameter(param_package, tmp_path):
    """As KFP's driver does: the importer's uri is the run's `model_uri` parameter."""
    model = tmp_path / "model"
    model.mkdir()
    res = emulator.run_compiled_locally(param_package, str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                                        params=[f"model_uri={model}"])
    assert res["tasks"]["ModelImporter"]["outputs"]["result"]["uri"] == str(model)
    store = results.connect(str(tmp_path / "m.sqlite"))
    assert [a.uri for a in store.get_artifacts_by_type("Model")] == [str(model)]
