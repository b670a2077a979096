"""Kubeflow Pipelines without a cluster (issue 4): the compiled package loads with kfp, matches a golden
file, runs task by task through the container entrypoint KFP uses with MLMD lineage as in a local
run; kfp.Client requests are recorded by a fake v2beta1 API on 127.0.0.1; the Dockerfile agrees
with the lock.

Regenerate the golden file after an intended pipeline change:
    COLLABOPT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_kfp.py -k golden
"""
import http.server
import json
import os
import re
import shlex
import socket
import tempfile
import threading
import tomllib
import urllib.parse

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2

from collabopt import __version__, kfp_runner, results
from collabopt.core import tree_paths
from collabopt.kfp_runner import KfpError
from collabopt.pipelines import config as tree_config, tree

from collabopt.tests.helpers import lineage  # the local runs' own lineage walk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(REPO, "tests", "golden", "kfp_demo_spec.json")
ROOT = "gs://collabopt-test/root"  # what the packages are compiled for; local runs override it
DEMO_CONFIG = os.path.join(tree_config.CONFIG_DIR, "demo.yaml")
LOCKED = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tfx", "ml-pipelines-sdk", "ml-metadata",
          "ethos-u-vela", "kfp", "kfp-pipeline-spec", "apache-beam")


def _demo_raw():
    with open(DEMO_CONFIG) as f:
        return yaml.safe_load(f)


# The demo's tree (PTQ, prune+cluster PTQ, PCQAT; two NPU targets) on small data. A size requirement
# instead of the demo's accuracy one (noisy on 500 images) blesses the two pruned+clustered leaves
# and not the PTQ one, so both branches of the NPU conditions run.
RUN_CONFIG = {**_demo_raw(), "name": "collabopt-kfp-test", "data": {"train_limit": 2000, "eval_limit": 500},
              "prune": {"target_sparsity": 0.5, "epochs": 1}, "requirements": {"max_gzip_bytes": 24000}}


def _compile(config, path, **kw):
    pipe = tree.create_pipeline(tree_config.merge(config), ROOT)
    return kfp_runner.compile_pipeline(pipe, str(path), **kw)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("kfp")
    out = {}
    for key, cfg in (("demo", _demo_raw()), ("run", RUN_CONFIG), ("all", tree_config.load("all_paths"))):
        path = d / f"{key}.yaml"
        out[key] = (str(path), _compile(cfg, path))
    return out


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
    result = kfp_runner.run_compiled_locally(packages["run"][0], str(d / "root"), mlmd, workers=2, env=task_env)
    return result, mlmd


# ----------------------------------------------------------------------------------- compile, golden

def _title(type_schema):
    return kfp_runner._schema_title(type_schema)


def test_demo_and_all_paths_compile_to_packages_kfp_loads(packages):
    from kfp import components
    from kfp.client import client as kfp_client
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entry
    from tfx.types import artifact as tfx_artifact
    from tfx.utils import import_utils

    for key in ("demo", "all"):
        path, spec = packages[key]
        assert components.load_component_from_file(path).name == spec["pipelineInfo"]["name"]
        doc = kfp_client._extract_pipeline_yaml(path)  # what kfp.Client sends
        assert doc.pipeline_spec.schema_version == "2.1.0"  # KFP 2.x resolves only 2.1 parameters
        assert spec["defaultPipelineRoot"] == ROOT
        tasks = spec["root"]["dag"]["tasks"]
        for name, task in tasks.items():
            for p, v in task.get("inputs", {}).get("parameters", {}).items():
                assert "constant" in v.get("runtimeValue", {}), (name, p, v)
        for ex in spec["deploymentSpec"]["executors"].values():
            assert ex["container"]["command"] == list(kfp_runner.ENTRYPOINT)
            assert ex["container"]["image"] == f"collabopt:{__version__}"
        # Every artifact type resolves in the container the way the entrypoint does it: TFX's own by
        # its table, ours as the class path collabopt.<Class>.
        titles = {_title(a["artifactType"]) for c in spec["components"].values()
                  for side in ("inputDefinitions", "outputDefinitions")
                  for a in c.get(side, {}).get("artifacts", {}).values()}
        assert {"collabopt.TFLiteModel", "collabopt.NPUModel", "collabopt.LeafEvaluation",
                "collabopt.OptimizationReport"} <= titles
        for title in titles:
            cls = import_utils.import_class_by_path(entry._retrieve_class_path(
                entry.pipeline_pb2.ArtifactTypeSchema(schema_title=title)))
            assert issubclass(cls, tfx_artifact.Artifact)
            assert not title.startswith("collabopt.") or cls.TYPE_NAME == title
    tasks = packages["all"][1]["root"]["dag"]["tasks"]
    npu = sorted(t for t in tasks if t.startswith("NPU_"))
    assert npu == sorted(f"NPU_{p}" for p in tree_paths.PATHS)  # every path of the tree, each gated
    assert all("blessed" in tasks[t]["triggerPolicy"]["condition"] for t in npu)
    assert sorted(tasks["Reporter"]["inputs"]["artifacts"]) == sorted(tree_paths.PATHS)


def stable_view(spec):
    """What the golden file holds: tasks, their dependencies, inputs, parameters, artifact types,
    trigger conditions and executors, but not the image (a build choice) nor TFX's inputs-spec JSON
    argument (derived from the component's input definitions, which are here)."""
    comps, execs = spec["components"], spec["deploymentSpec"]["executors"]
    tasks = {}
    for name, task in sorted(spec["root"]["dag"]["tasks"].items()):
        comp = comps[task["componentRef"]["name"]]
        ex = execs[comp["executorLabel"]]
        ins = comp.get("inputDefinitions", {})
        view = {
            "dependentTasks": sorted(task.get("dependentTasks", [])),
            "inputs": {k: "{producerTask}.{outputArtifactKey}".format(**v["taskOutputArtifact"])
                       for k, v in sorted(task.get("inputs", {}).get("artifacts", {}).items())},
            "parameters": {k: v["runtimeValue"]["constant"] if "runtimeValue" in v else v
                           for k, v in sorted(task.get("inputs", {}).get("parameters", {}).items())},
            "input_types": {k: _title(a["artifactType"]) for k, a in sorted(ins.get("artifacts", {}).items())},
            "optional_inputs": sorted(k for k, a in ins.get("artifacts", {}).items() if a.get("isOptional")),
            "parameter_types": {k: p["parameterType"] for k, p in sorted(ins.get("parameters", {}).items())},
            "output_types": {k: _title(a["artifactType"]) for k, a in
                             sorted(comp.get("outputDefinitions", {}).get("artifacts", {}).items())},
        }
        if "triggerPolicy" in task:
            view["condition"] = task["triggerPolicy"]["condition"]
        if "container" in ex:
            args = ex["container"]["args"]
            view["executor"] = {"command": ex["container"]["command"],
                                "executor_class_path": args[args.index("--executor_class_path") + 1],
                                "extra_args": args[args.index("--json_serialized_inputs_spec_args") + 2:]}
        else:
            imp = ex["importer"]
            view["executor"] = {"importer": {"artifactUri": imp["artifactUri"], "type": _title(imp["typeSchema"]),
                                             "metadata": imp.get("metadata", {})}}
        tasks[name] = view
    return {"pipelineInfo": spec["pipelineInfo"], "schemaVersion": spec["schemaVersion"],
            "defaultPipelineRoot": spec.get("defaultPipelineRoot"),
            "root_parameters": spec["root"].get("inputDefinitions", {}).get("parameters", {}), "tasks": tasks}


def test_compiled_demo_spec_matches_golden(packages):
    view = stable_view(packages["demo"][1])
    if os.environ.get("COLLABOPT_UPDATE_GOLDEN") == "1":
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            json.dump(view, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(GOLDEN) as f:
        golden = json.load(f)
    assert view == golden, ("the compiled demo spec changed; if intended, regenerate: "
                            "COLLABOPT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_kfp.py -k golden")


def test_compile_refuses_what_kfp_cannot_use(tmp_path):
    cfg = tree_config.merge({**_demo_raw(), "paths": ["ptq"]})
    with pytest.raises(KfpError, match="must end in .yaml"):
        kfp_runner.compile_pipeline(tree.create_pipeline(cfg, ROOT), str(tmp_path / "p.json"))
    local = tree.create_pipeline(cfg, str(tmp_path / "root"), metadata_path=str(tmp_path / "m.sqlite"))
    with pytest.raises(KfpError, match="metadata_path=None"):
        kfp_runner.compile_pipeline(local, str(tmp_path / "p.yaml"))
    from tfx.dsl.components.common import importer
    from tfx.orchestration import pipeline
    from tfx.types import standard_artifacts
    imp = importer.Importer(source_uri="gs://b/m", artifact_type=standard_artifacts.Model)
    with pytest.raises(KfpError, match="pipeline name 'My_Model': KFP takes lowercase letters, digits and '-'"):
        kfp_runner.compile_pipeline(pipeline.Pipeline(pipeline_name="My_Model", pipeline_root=ROOT, components=[imp]),
                                    str(tmp_path / "p.yaml"))
    from tfx.dsl.components.common import resolver
    from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
    from tfx.types import channel
    latest = resolver.Resolver(strategy_class=LatestArtifactStrategy,
                               model=channel.Channel(type=standard_artifacts.Model)).with_id("LatestModel")
    with pytest.raises(KfpError, match="LatestModel compile to resolver executors"):
        kfp_runner.compile_pipeline(pipeline.Pipeline(pipeline_name="resolving", pipeline_root=ROOT,
                                                      components=[latest]), str(tmp_path / "p.yaml"))
    assert not os.path.exists(tmp_path / "p.yaml")


@pytest.fixture(scope="module")
def param_package(tmp_path_factory):
    """A pipeline with a RuntimeParameter (an Importer's source uri): root parameters for --param."""
    from tfx.dsl.components.common import importer
    from tfx.orchestration import data_types, pipeline
    from tfx.types import standard_artifacts
    uri = data_types.RuntimeParameter(name="model_uri", ptype=str, default="gs://collabopt-test/model")
    imp = importer.Importer(source_uri=uri, artifact_type=standard_artifacts.Model).with_id("ModelImporter")
    path = str(tmp_path_factory.mktemp("kfp_params") / "params.yaml")
    kfp_runner.compile_pipeline(pipeline.Pipeline(pipeline_name="params-test", pipeline_root=ROOT,
                                                  components=[imp]), path, image="registry.example/collabopt:x")
    return path


def test_runtime_parameter_defaults_survive_into_the_package(param_package, tmp_path):
    spec = kfp_runner.load_package(param_package)
    # TFX's own YAML writer drops RuntimeParameter defaults: KFP would refuse a run without --param.
    assert spec["root"]["inputDefinitions"]["parameters"] == {
        "model_uri": {"parameterType": "STRING", "defaultValue": "gs://collabopt-test/model"}}
    imp = spec["deploymentSpec"]["executors"]["ModelImporter_executor"]["importer"]
    assert imp["artifactUri"] == {"runtimeParameter": "artifact_uri"}
    # The importer resolves its uri from the run's parameter, as KFP's driver does.
    model = tmp_path / "model"
    model.mkdir()
    res = kfp_runner.run_compiled_locally(param_package, str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                                          params=[f"model_uri={model}"])
    assert res["tasks"]["ModelImporter"]["outputs"]["result"]["uri"] == str(model)
    store = results.connect(str(tmp_path / "m.sqlite"))
    assert [a.uri for a in store.get_artifacts_by_type("Model")] == [str(model)]


# ------------------------------------------------------------------------------ the task-by-task run

def test_compiled_demo_runs_task_by_task_to_the_npu_model(compiled_run, packages):
    result, _ = compiled_run
    tasks = result["tasks"]
    assert set(tasks) == set(packages["run"][1]["root"]["dag"]["tasks"])
    skipped = {t for t, r in tasks.items() if r["state"] == "SKIPPED"}
    assert skipped == {"NPU_ptq"} and "is false" in tasks["NPU_ptq"]["reason"]  # gzip > 24,000 B: not blessed
    assert all(r["state"] == "COMPLETE" for t, r in tasks.items() if t not in skipped)
    for leaf in ("prune_cluster_ptq", "prune_cluster_pcqat"):
        npu = tasks[f"NPU_{leaf}"]["outputs"]["npu_model"]
        for target in RUN_CONFIG["npu"]["targets"]:
            assert os.path.isfile(os.path.join(npu["uri"], target, "model_vela.tflite")), (leaf, target)
        assert npu["metadata"]["npu_op_pct"] == 100.0
        assert os.path.isfile(os.path.join(tasks[f"Convert_{leaf}"]["outputs"]["tflite_model"]["uri"],
                                           "model.tflite"))
    assert os.path.isfile(os.path.join(tasks["Reporter"]["outputs"]["report"]["uri"], "report.html"))
    # The executor input is KFP's: upstream artifacts with their MLMD id, type and metadata; output
    # URIs under <root>/<pipeline>/<run>/<task>/; parameters as JSON values.
    task_dir = os.path.join(result["run_root"], "NPU_prune_cluster_pcqat")
    with open(os.path.join(task_dir, "executor_input.json")) as f:
        ex_in = json.load(f)
    tfl = ex_in["inputs"]["artifacts"]["tflite_model"]["artifacts"][0]
    assert _title(tfl["type"]) == "collabopt.TFLiteModel" and tfl["name"].isdigit()
    assert tfl["uri"] == tasks["Convert_prune_cluster_pcqat"]["outputs"]["tflite_model"]["uri"]
    assert tfl["metadata"]["mode"] == "qat"
    blessing = ex_in["inputs"]["artifacts"]["_Evaluate_prune_cluster_pcqat.blessing"]["artifacts"][0]
    assert blessing["metadata"]["blessed"] == 1.0
    assert ex_in["outputs"]["artifacts"]["npu_model"]["artifacts"][0]["uri"] == f"{task_dir}/npu_model"
    assert ex_in["outputs"]["outputFile"] == f"{task_dir}/executor_output.json"
    assert json.loads(ex_in["inputs"]["parameterValues"]["accelerator_configs"]) == RUN_CONFIG["npu"]["targets"]


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


def test_importers_feed_the_containers(compiled_run, tmp_path, task_env):
    """An Examples and a Model importer (reimport=False) ahead of a TFLiteConverter container."""
    result, _ = compiled_run
    outs = result["tasks"]
    cfg = {**RUN_CONFIG, "name": "kfp-importers", "paths": ["ptq"],
           "examples": {"uri": outs["FashionMnistExampleGen"]["outputs"]["examples"]["uri"]},
           "baseline": {"model_uri": outs["BaselineTrainer"]["outputs"]["model"]["uri"]}}
    pkg = tmp_path / "importers.yaml"
    _compile(cfg, pkg)
    mlmd = str(tmp_path / "m.sqlite")
    first = kfp_runner.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd, tasks={
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
        kfp_runner.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd, tasks={"Convert_ptq"})
    again = kfp_runner.run_compiled_locally(str(pkg), str(tmp_path / "root"), mlmd,
                                            tasks={"ExamplesImporter", "BaselineImporter"})
    assert again["tasks"]["ExamplesImporter"]["outputs"]["result"]["name"] == str(examples.id)  # reused
    assert len(store.get_artifacts_by_type("Examples")) == 1


def test_a_failing_task_fails_the_run_and_its_execution(tmp_path, param_package):
    spec = kfp_runner.load_package(param_package)
    spec["root"]["dag"]["tasks"]["Broken"] = {"componentRef": {"name": "Broken"}, "taskInfo": {"name": "Broken"}}
    spec["components"]["Broken"] = {"executorLabel": "Broken_executor"}
    spec["deploymentSpec"]["executors"]["Broken_executor"] = {"container": {
        "image": "x", "command": ["python", "-c", "import sys; sys.exit('no such model: gs://nowhere')"],
        "args": []}}
    pkg = tmp_path / "broken.yaml"
    pkg.write_text(yaml.safe_dump(spec))
    with pytest.raises(KfpError, match=r"task Broken failed: exit code 1(.|\n)*no such model"):
        kfp_runner.run_compiled_locally(str(pkg), str(tmp_path / "root"), str(tmp_path / "m.sqlite"))
    store = results.connect(str(tmp_path / "m.sqlite"))
    assert {e["node"]: e["state"] for e in results.executions(store)}["Broken"] == "FAILED"


# ---------------------------------------------------------------------- kfp.Client against a fake API

class FakeKfp(http.server.ThreadingHTTPServer):
    """Answers the KFP v2beta1 REST endpoints kfp.Client 2.16 calls and records every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests, self.experiments, self.fail_next = [], [], None
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, path):
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method):
        srv, url = self.server, urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        srv.requests.append({"method": method, "path": url.path, "query": query, "body": body})
        if srv.fail_next and method == "POST":
            status, message = srv.fail_next
            srv.fail_next = None
            return self._answer(status, {"error": message, "code": 14, "message": message})
        now = "2026-11-27T03:00:00Z"
        api = "/apis/v2beta1/"
        if (method, url.path) == ("GET", api + "healthz"):
            return self._answer(200, {"multi_user": False, "pipeline_store": "database"})
        if (method, url.path) == ("GET", api + "experiments"):
            preds = json.loads(query.get("filter", "{}")).get("predicates", [])
            hits = [e for e in srv.experiments if all(e.get(p["key"]) == p.get("stringValue") for p in preds)]
            return self._answer(200, {"experiments": hits, "total_size": len(hits)} if hits else {})
        if (method, url.path) == ("POST", api + "experiments"):
            exp = {"experiment_id": f"exp-{len(srv.experiments) + 1}", "display_name": body["display_name"],
                   "created_at": now}
            srv.experiments.append(exp)
            return self._answer(200, exp)
        if (method, url.path) == ("POST", api + "runs"):
            return self._answer(200, {**body, "run_id": f"run-{len(srv.posted(url.path))}", "state": "PENDING",
                                      "created_at": now})
        if (method, url.path) == ("POST", api + "recurringruns"):
            return self._answer(200, {**body, "recurring_run_id": f"rr-{len(srv.posted(url.path))}",
                                      "status": "ENABLED", "created_at": now})
        return self._answer(404, {"error": "Not Found", "code": 5, "message": f"no route {method} {url.path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture
def kfp_api():
    srv = FakeKfp()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _spec_of(package):
    with open(package) as f:
        return yaml.safe_load(f)


def test_submit_sends_the_compiled_spec_and_the_pipeline_root(kfp_api, packages):
    package = packages["demo"][0]
    run_id = kfp_runner.submit(package, kfp_api.url, experiment="collabopt", run_name="demo run",
                               pipeline_root="gs://bucket/runs")
    assert run_id == "run-1"
    calls = [(r["method"], r["path"]) for r in kfp_api.requests]
    assert calls == [("GET", "/apis/v2beta1/healthz"), ("GET", "/apis/v2beta1/experiments"),
                     ("POST", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/runs")]
    assert json.loads(kfp_api.requests[1]["query"]["filter"])["predicates"][0]["stringValue"] == "collabopt"
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "demo run" and run["experiment_id"] == "exp-1"
    assert run["pipeline_spec"] == _spec_of(package)  # byte for byte the compiled PipelineSpec
    assert run["runtime_config"] == {"parameters": {}, "pipeline_root": "gs://bucket/runs"}
    # Without --pipeline-root the package's default is sent; the experiment now exists and is reused.
    kfp_runner.submit(package, kfp_api.url, experiment="collabopt")
    assert len(kfp_api.posted("/apis/v2beta1/experiments")) == 1
    second = kfp_api.posted("/apis/v2beta1/runs")[1]
    assert second["runtime_config"]["pipeline_root"] == ROOT and second["experiment_id"] == "exp-1"
    assert second["display_name"].startswith("collabopt-demo ")


def test_submit_sends_typed_parameters(kfp_api, param_package):
    kfp_runner.submit(param_package, kfp_api.url, params=["model_uri=gs://bucket/models/v2"])
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["runtime_config"]["parameters"] == {"model_uri": "gs://bucket/models/v2"}
    assert kfp_api.posted("/apis/v2beta1/experiments")[0]["display_name"] == "Default"


def test_schedule_creates_a_recurring_run(kfp_api, packages, param_package):
    rr = kfp_runner.schedule(packages["demo"][0], kfp_api.url, "0 0 3 * * *", experiment="retraining")
    assert rr == "rr-1"
    [body] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 1 and body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "collabopt-demo (0 0 3 * * *)"
    assert body["pipeline_spec"] == _spec_of(packages["demo"][0])
    assert body["runtime_config"] == {"parameters": {}, "pipeline_root": ROOT}
    kfp_runner.schedule(param_package, kfp_api.url, "@every 12h", max_concurrency=3, name="nightly",
                        params={"model_uri": "gs://bucket/m"}, pipeline_root="gs://other/root")
    body = kfp_api.posted("/apis/v2beta1/recurringruns")[1]
    assert body["trigger"]["cron_schedule"]["cron"] == "@every 12h" and int(body["max_concurrency"]) == 3
    assert body["display_name"] == "nightly"
    assert body["runtime_config"] == {"parameters": {"model_uri": "gs://bucket/m"}, "pipeline_root": "gs://other/root"}


@pytest.mark.parametrize("cron, message", [
    ("0 3 * * *", "5 fields, KFP needs 6.*did you mean '0 0 3 \\* \\* \\*'"),
    ("0 0 25 * * *", "hour field: 25 is outside 0-23"),
    ("0 0 3 * * MONDAY", "day of week field: 'MONDAY' is not a number"),
    ("0 */0 * * * *", "step '0' must be a positive integer"),
    ("0 0 5-3 * * *", "range '5-3' runs backwards"),
    ("@fortnightly", "unknown descriptor"),
    ("", "0 fields"),
])
def test_bad_cron_fails_before_any_request(kfp_api, packages, cron, message):
    with pytest.raises(KfpError, match=message):
        kfp_runner.schedule(packages["demo"][0], kfp_api.url, cron)
    assert kfp_api.requests == []


def test_valid_crons():
    for cron in ("0 0 3 * * *", "*/30 * * * * ?", "0 0 9 ? * MON-FRI", "0 15,45 8-18/2 1 JAN,jul *", "@daily",
                 "@every 1h30m"):
        assert kfp_runner.validate_cron(cron) == cron


def test_local_mistakes_fail_before_any_request(kfp_api, packages, param_package, tmp_path):
    demo = packages["demo"][0]
    with pytest.raises(KfpError, match="does not exist"):
        kfp_runner.submit(str(tmp_path / "nope.yaml"), kfp_api.url)
    with pytest.raises(KfpError, match="does not exist"):
        kfp_runner.schedule(str(tmp_path / "nope.yaml"), kfp_api.url, "0 0 3 * * *")
    with pytest.raises(KfpError, match="expected NAME=VALUE"):
        kfp_runner.submit(param_package, kfp_api.url, params=["model_uri"])
    with pytest.raises(KfpError, match=r"unknown pipeline parameter\(s\) \['epochs'\]; this package takes model_uri"):
        kfp_runner.submit(param_package, kfp_api.url, params=["epochs=3"])
    with pytest.raises(KfpError, match="takes no parameters"):
        kfp_runner.submit(demo, kfp_api.url, params={"epochs": 3})
    for bad in (0, 11, "2"):
        with pytest.raises(KfpError, match="max_concurrency must be an integer 1-10"):
            kfp_runner.schedule(demo, kfp_api.url, "0 0 3 * * *", max_concurrency=bad)
    spec = _spec_of(demo)
    del spec["defaultPipelineRoot"]
    (tmp_path / "rootless.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(KfpError, match="no pipeline root"):
        kfp_runner.submit(str(tmp_path / "rootless.yaml"), kfp_api.url)
    assert kfp_api.requests == []


def test_unreachable_host_is_named(packages):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    for call in (lambda: kfp_runner.submit(packages["demo"][0], host),
                 lambda: kfp_runner.schedule(packages["demo"][0], host, "0 0 3 * * *")):
        with pytest.raises(KfpError, match=re.escape(f"cannot reach Kubeflow Pipelines at {host}") + ".*[Cc]onnection refused"):
            call()


def test_api_refusal_is_reported_with_its_status(kfp_api, packages):
    kfp_api.fail_next = (503, "the pipeline store is unavailable")
    with pytest.raises(KfpError, match=f"{re.escape(kfp_api.url)} refused the request: HTTP 503.*store is unavailable"):
        kfp_runner.submit(packages["demo"][0], kfp_api.url)


# ------------------------------------------------------------------------------------------- the image

def _dockerfile():
    """[(INSTRUCTION, argument)] with continuation lines joined and comments dropped."""
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", "\n".join(l for l in f.read().splitlines() if not l.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def _lock_versions():
    with open(os.path.join(REPO, "uv.lock"), "rb") as f:
        lock = tomllib.load(f)
    return {p["name"]: p["version"] for p in lock["package"]}, lock


def _pins(requirements):
    out = {}
    for req in requirements:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^;\s]+)", req)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def test_dockerfile_base_entrypoint_and_pins_agree_with_the_lock():
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kdr

    steps = _dockerfile()
    base = dict(steps)["FROM"].split()[-1]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm", base), base  # Debian 12: glibc 2.36
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry == list(kfp_runner.ENTRYPOINT) == list(kdr.KUBEFLOW_TFX_CMD)  # what compiled specs run
    env = {}
    for kind, arg in steps:
        if kind == "ENV":
            env.update(dict(tok.split("=", 1) for tok in shlex.split(arg)))
    assert env["TF_USE_LEGACY_KERAS"] == "1" and env["PATH"].startswith(env["UV_PROJECT_ENVIRONMENT"] + "/bin:")
    runs = [arg for kind, arg in steps if kind == "RUN"]
    syncs = [r for r in runs if "uv sync --locked" in r]
    assert len(syncs) == 2 and "--no-install-project" in syncs[0] and "--no-editable" in syncs[1]
    assert any("vela --version" in r and "kubeflow_v2_run_executor" in r for r in runs)
    assert "dataset-fashion-mnist" in " ".join(runs)
    # Dependencies from the lock alone first (a cached layer), then the project itself.
    at = {step: i for i, step in enumerate(steps)}
    copy_lock, copy_all = at[("COPY", "pyproject.toml uv.lock ./")], at[("COPY", ". .")]
    assert copy_lock < at[("RUN", syncs[0])] < copy_all < at[("RUN", syncs[1])]
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    assert args["VERSION"] == pyproject["project"]["version"] == __version__  # image tag collabopt:<version>
    assert kfp_runner.default_image() == f"collabopt:{__version__}"
    with open(os.path.join(REPO, "Makefile")) as f:
        makefile = f.read()
    assert f"uv=={args['UV_VERSION']}" in makefile and "-t collabopt:$$(" in makefile
    # The pins, the overrides and the lock agree (the image installs the lock: uv sync --locked).
    locked, lock = _lock_versions()
    pins = _pins(pyproject["project"]["dependencies"])
    overrides = _pins(pyproject["tool"]["uv"]["override-dependencies"])
    for name in LOCKED:
        assert locked[name] == pins[name], (name, pins[name], locked[name])
    assert overrides["ml-metadata"] == pins["ml-metadata"] == locked["ml-metadata"] == "1.17.1"
    assert {o["name"]: o.get("specifier") for o in lock["manifest"]["overrides"]}["ml-metadata"] == "==1.17.1"
    assert "tensorflow-data-validation" not in locked  # needs glibc 2.38: dropped by the lock


def test_cli_compile_schedule_a_retraining_config(kfp_api, tmp_path, capsys):
    """The production flow through the `collabopt` command: a config whose baseline is the newest
    model a TFX Pusher deployed and whose blessed leaves are pushed, compiled, then scheduled."""
    from collabopt import cli
    config = tmp_path / "retrain.yaml"
    config.write_text("name: nightly-tree\npaths: [prune_cluster_pcqat]\n"
                      "baseline: {pushed_models: gs://bucket/serving/baseline}\n"
                      "examples: {uri: gs://bucket/examples}\npush: {destination: gs://bucket/edge}\n")
    package = str(tmp_path / "nightly.yaml")
    assert cli.main(["compile", str(config), "-o", package, "--image", "registry.example/collabopt:0.1.0",
                     "--pipeline-root", ROOT]) == 0
    spec = kfp_runner.load_package(package)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"LatestPushedModel", "Push_prune_cluster_pcqat", "Push_ptq"} <= set(tasks)
    assert "blessed" in json.dumps(tasks["Push_prune_cluster_pcqat"]["triggerPolicy"])
    assert spec["defaultPipelineRoot"] == ROOT
    assert cli.main(["schedule", package, "--host", kfp_api.url, "--cron", "0 0 3 * * *",
                     "--experiment", "retraining"]) == 0
    [body] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}} and int(body["max_concurrency"]) == 1
    assert body["pipeline_spec"] == _spec_of(package)
    with pytest.raises(SystemExit, match="KFP needs 6"):
        cli.main(["schedule", package, "--host", kfp_api.url, "--cron", "0 3 * * *"])
    assert len(kfp_api.posted("/apis/v2beta1/recurringruns")) == 1  # the bad cron sent nothing
    # MLMD resolvers compile to executors KFP's backend does not run: refused, pointing at the way out.
    config.write_text("paths: [ptq]\nbaseline: {resolve: latest_blessed}\n")
    with pytest.raises(SystemExit, match="compile to resolver executors"):
        cli.main(["compile", str(config), "-o", str(tmp_path / "r.yaml"), "--pipeline-root", ROOT])
