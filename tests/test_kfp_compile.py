"""Compiling to a Kubeflow Pipelines package: the package loads with kfp, its stable fields match a
golden file, what KFP cannot run is refused at compile time, RuntimeParameter defaults survive, what
changes run to run compiles as pipeline parameters (the local path keeps constants), the config's
kubeflow section becomes resources, node selectors, caching and the run's service account.

Regenerate the golden file after an intended pipeline change:
    COLLABOPT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_kfp_compile.py -k golden
"""
import ast
import json
import os
import re
import subprocess
import sys

import pytest

from collabopt import __version__
from collabopt.core import tree_paths
from collabopt.kubeflow import KfpError, compiler
from collabopt.kubeflow.compiler import schema_title
from collabopt.pipelines import config as tree_config, tree

from collabopt.tests.kfp_fixtures import (PROD_CONFIG, ROOT, RUN_CONFIG, demo_raw, packages,  # noqa: F401
                                          param_package, spec_of)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "kfp_demo_spec.json")


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
        declared = spec["root"]["inputDefinitions"]["parameters"]
        for name, task in tasks.items():
            for p, v in task.get("inputs", {}).get("parameters", {}).items():
                assert "constant" in v.get("runtimeValue", {}) or v.get("componentInputParameter") in declared, \
                    (name, p, v)
        for ex in spec["deploymentSpec"]["executors"].values():
            assert ex["container"]["command"] == list(compiler.ENTRYPOINT)
            assert ex["container"]["image"] == f"collabopt:{__version__}"
        # Every artifact type resolves in the container the way the entrypoint does it: TFX's own by
        # its table, ours as the class path collabopt.<Class>.
        titles = {schema_title(a["artifactType"]) for c in spec["components"].values()
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
    everyone = tree_paths.expand("all")  # every path but the opt-in ones
    assert npu == sorted(f"NPU_{p}" for p in everyone)  # one Vela compile each
    assert not [t for t, task in tasks.items() if "triggerPolicy" in task]  # no push: nothing conditional
    assert sorted(tasks["Reporter"]["inputs"]["artifacts"]) == sorted(everyone)


def test_trigger_conditions_read_inputs_their_task_declares(packages):
    """With push.destination a leaf is pushed only if blessed. TFX 1.21 names the LeafPusher's blessing
    in its condition by an implicit input it then leaves out; KFP's driver could not evaluate that."""
    spec = packages["run"][1]
    tasks = spec["root"]["dag"]["tasks"]
    conditional = sorted(t for t, task in tasks.items() if "triggerPolicy" in task)
    assert conditional == sorted(f"Push_{p}" for p in RUN_CONFIG["paths"])
    for name in conditional:
        declared = spec["components"][tasks[name]["componentRef"]["name"]]["inputDefinitions"]["artifacts"]
        assert re.findall(r"inputs\.artifacts\['([^']+)'\]", tasks[name]["triggerPolicy"]["condition"]) == ["blessing"]
        assert "blessing" in declared
    assert tasks["Push_ptq"]["triggerPolicy"]["condition"] == \
        "(inputs.artifacts['blessing'].artifacts[0].metadata['blessed'] == 1.0)"
    assert tasks["Push_ptq"]["inputs"]["artifacts"]["blessing"]["taskOutputArtifact"] == {
        "producerTask": "Evaluate_ptq", "outputArtifactKey": "blessing"}


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
            "input_types": {k: schema_title(a["artifactType"]) for k, a in sorted(ins.get("artifacts", {}).items())},
            "optional_inputs": sorted(k for k, a in ins.get("artifacts", {}).items() if a.get("isOptional")),
            "parameter_types": {k: p["parameterType"] for k, p in sorted(ins.get("parameters", {}).items())},
            "output_types": {k: schema_title(a["artifactType"]) for k, a in
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
            view["executor"] = {"importer": {"artifactUri": imp["artifactUri"], "type": schema_title(imp["typeSchema"]),
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
                            "COLLABOPT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_kfp_compile.py -k golden")


def test_compile_refuses_what_kfp_cannot_use(tmp_path):
    cfg = tree_config.merge({**demo_raw(), "paths": ["ptq"]})
    with pytest.raises(KfpError, match="must end in .yaml"):
        compiler.compile_pipeline(tree.create_pipeline(cfg, ROOT), str(tmp_path / "p.json"))
    local = tree.create_pipeline(cfg, str(tmp_path / "root"), metadata_path=str(tmp_path / "m.sqlite"))
    with pytest.raises(KfpError, match="metadata_path=None"):
        compiler.compile_pipeline(local, str(tmp_path / "p.yaml"))
    from tfx.dsl.components.common import importer
    from tfx.orchestration import pipeline
    from tfx.types import standard_artifacts
    imp = importer.Importer(source_uri="gs://b/m", artifact_type=standard_artifacts.Model)
    with pytest.raises(KfpError, match="pipeline name 'My_Model': KFP takes lowercase letters, digits and '-'"):
        compiler.compile_pipeline(pipeline.Pipeline(pipeline_name="My_Model", pipeline_root=ROOT, components=[imp]),
                                  str(tmp_path / "p.yaml"))
    from tfx.dsl.components.common import resolver
    from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
    from tfx.types import channel
    latest = resolver.Resolver(strategy_class=LatestArtifactStrategy,
                               model=channel.Channel(type=standard_artifacts.Model)).with_id("LatestModel")
    with pytest.raises(KfpError, match="LatestModel compile to resolver executors"):
        compiler.compile_pipeline(pipeline.Pipeline(pipeline_name="resolving", pipeline_root=ROOT,
                                                    components=[latest]), str(tmp_path / "p.yaml"))
    assert not os.path.exists(tmp_path / "p.yaml")


def test_runtime_parameter_defaults_survive_into_the_package(param_package):
    spec = compiler.load_package(param_package)
    # TFX's own YAML writer drops RuntimeParameter defaults: KFP would refuse a run without --param.
    assert spec["root"]["inputDefinitions"]["parameters"] == {
        "model_uri": {"parameterType": "STRING", "defaultValue": "gs://collabopt-test/model"}}
    imp = spec["deploymentSpec"]["executors"]["ModelImporter_executor"]["importer"]
    assert imp["artifactUri"] == {"runtimeParameter": "artifact_uri"}


def test_compile_and_submit_do_not_import_the_emulator():
    code = ("import sys, collabopt.cli, collabopt.kubeflow.compiler, collabopt.kubeflow.client\n"
            "print(sorted(m for m in sys.modules if m.startswith('collabopt.kubeflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(out) == ["collabopt.kubeflow", "collabopt.kubeflow.client", "collabopt.kubeflow.compiler",
                                     "collabopt.kubeflow.run_inputs"]


def _parameter_inputs(spec):
    """{(task, input): root parameter} for every task input that is a pipeline parameter."""
    return {(t, k): v["componentInputParameter"] for t, task in spec["root"]["dag"]["tasks"].items()
            for k, v in task.get("inputs", {}).get("parameters", {}).items() if "componentInputParameter" in v}


def test_a_production_package_exposes_run_parameters_and_resource_settings(packages):
    path, spec = packages["prod"]
    declared = spec["root"]["inputDefinitions"]["parameters"]
    cfg = tree_config.merge(PROD_CONFIG)

    def param(key, kind, default):
        return {"parameterType": kind, "defaultValue": default, "description": f"collabopt config key {key}"}
    assert declared == {  # no baseline_epochs: the baseline is the newest pushed model, nothing is trained
        "data_train_limit": param("data.train_limit", "NUMBER_INTEGER", 20000),
        "data_eval_limit": param("data.eval_limit", "NUMBER_INTEGER", 5000),
        "prune_epochs": param("prune.epochs", "NUMBER_INTEGER", 2),
        "cluster_epochs": param("cluster.epochs", "NUMBER_INTEGER", 1),
        "qat_epochs": param("qat.epochs", "NUMBER_INTEGER", 1),
        "requirements": param("requirements", "STRING", '{"max_int8_accuracy_drop_pp": 1.0}'),
        "push_destination": param("push.destination", "STRING", "gs://collabopt-test/edge"),
        "examples_uri": param("examples.uri", "STRING", "gs://collabopt-test/examples"),
        "baseline_pushed_models": param("baseline.pushed_models", "STRING", "gs://collabopt-test/serving")}
    inputs = _parameter_inputs(spec)
    tasks = spec["root"]["dag"]["tasks"]
    assert {t for (t, k), p in inputs.items() if p == "data_train_limit"} == \
        {t for t in tasks if t not in ("ExamplesImporter", "LatestPushedModel", "Reporter") and
         not t.startswith(("NPU_", "Push_"))}  # every task reading the Examples
    assert {(t, k) for (t, k), p in inputs.items() if p.endswith("_epochs")} == \
        {("Pruner", "epochs"), ("SparseClusterer", "epochs"), ("PCQAT", "epochs")}
    assert {t for (t, k), p in inputs.items() if p == "push_destination"} == \
        {f"{kind}_{leaf}" for kind in ("Evaluate", "Push") for leaf in cfg["paths"]}  # the gate and the push
    assert {t for (t, k), p in inputs.items() if p == "requirements"} == {f"Evaluate_{leaf}" for leaf in cfg["paths"]}
    assert inputs[("LatestPushedModel", "pushed_models")] == "baseline_pushed_models"
    assert inputs[("ExamplesImporter", "artifact_uri")] == "examples_uri"
    # Resources: a task takes its node id's entry, else its class's, else the default, field by field.
    execs = spec["deploymentSpec"]["executors"]
    default = {"resourceCpuRequest": "1", "cpuRequest": 1.0, "resourceMemoryRequest": "4Gi",
               "memoryRequest": 4.294967296}
    assert execs["Pruner_executor"]["container"]["resources"] == default
    assert execs["PCQAT_executor"]["container"]["resources"] == {  # PreservingQAT's entry
        "resourceCpuRequest": "4", "cpuRequest": 4.0, "resourceMemoryRequest": "16Gi", "memoryRequest": 17.179869184,
        "resourceMemoryLimit": "20Gi", "memoryLimit": 21.47483648,
        "accelerator": {"resourceType": "nvidia.com/gpu", "resourceCount": "1", "type": "nvidia.com/gpu", "count": "1"}}
    assert execs["Evaluate_prune_cluster_pcqat_executor"]["container"]["resources"] == {
        **default, "resourceCpuRequest": "500m", "cpuRequest": 0.5}
    assert "container" not in execs["ExamplesImporter_executor"]  # the driver imports: no pod, no resources
    containers = sorted(label for label, ex in execs.items() if "container" in ex)
    platform = spec_of(path, 1)
    selectors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(selectors) == containers
    assert {label: sel["nodeSelector"]["labels"]["pool"] for label, sel in selectors.items()} == {
        label: "gpu" if label == "PCQAT_executor" else "cpu" for label in containers}
    assert {t: task.get("cachingOptions") for t, task in tasks.items()} == {t: {"enableCache": True} for t in tasks}
    assert compiler.run_options(path) == {"service_account": "collabopt-runner"}
    from google.protobuf import json_format
    from kfp import components
    from kfp.client import client as kfp_client
    from kfp.pipeline_spec import pipeline_spec_pb2
    doc = kfp_client._extract_pipeline_yaml(path)  # what kfp.Client sends: both documents parse
    assert doc.platform_spec.platforms["kubernetes"].deployment_spec.executors["PCQAT_executor"]["nodeSelector"]
    deployment = json_format.ParseDict(spec["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    assert deployment.executors["PCQAT_executor"].container.resources.accelerator.resource_count == "1"
    assert components.load_component_from_file(path).name == "collabopt-prod"


def test_the_local_pipeline_keeps_constants_and_placeholders_pass_construction():
    """Only a KFP package has pipeline parameters; a component takes a RuntimeParameter where the
    config schema would check the value (its executor checks the value at run time), if its type fits."""
    from tfx.orchestration import data_types

    from collabopt.components import Pruner
    from collabopt.schemas import ConfigError
    from tfx.types import channel, standard_artifacts
    local = tree.create_pipeline(tree_config.merge({**PROD_CONFIG, "paths": ["ptq"]}), "/tmp/root", publish_dir="")
    assert not [(c.id, k) for c in local.components for k, v in c.exec_properties.items()
                if isinstance(v, data_types.RuntimeParameter)]
    model, examples = (channel.Channel(type=t) for t in (standard_artifacts.Model, standard_artifacts.Examples))
    epochs = data_types.RuntimeParameter(name="prune_epochs", ptype=int, default=2)
    assert Pruner(model=model, examples=examples, epochs=epochs).exec_properties["epochs"] is epochs
    with pytest.raises(ConfigError, match="^prune.epochs: runtime parameter 'prune_epochs' is a str, this "
                                          "parameter a int$"):
        Pruner(model=model, examples=examples, epochs=data_types.RuntimeParameter(name="prune_epochs", ptype=str))
    with pytest.raises(ConfigError, match="^prune.target_sparsity: 1.5 is greater than or equal to the maximum of 1$"):
        Pruner(model=model, examples=examples, epochs=epochs, target_sparsity=1.5)  # constants are still checked


def test_compile_refuses_local_paths_unless_allowed(tmp_path, packages):
    from collabopt.tests.helpers import dense_model, save_model_dir
    model = save_model_dir(tmp_path / "model", dense_model())  # a real one: config load checks it
    cfg = {**demo_raw(), "paths": ["ptq"], "baseline": {"model_uri": str(model)},
           "push": {"destination": "/srv/edge"}, "examples": {"uri": "gs://b/examples"}}
    with pytest.raises(KfpError, match="^" + re.escape(
            f"local path(s) in a KFP package: baseline.model_uri '{model}', push.destination '/srv/edge': a task runs "
            "in its own container and sees none of this machine's files; use URIs (gs://, s3://, ...), or pass "
            "--allow-local-paths if these are paths in the image or a mounted volume") + "$"):
        compiler.compile_config(cfg, tmp_path / "p.yaml", pipeline_root=ROOT)
    assert not os.path.exists(tmp_path / "p.yaml")
    # Allowed: packages["run"] pushes to a folder on this machine (the emulated run's).
    path, spec = packages["run"]
    destination = spec["root"]["inputDefinitions"]["parameters"]["push_destination"]["defaultValue"]
    assert "://" not in destination and os.path.isdir(destination)


def test_kubeflow_section_mistakes_are_named(tmp_path):
    from collabopt.schemas import ConfigError
    cfg = {**demo_raw(), "paths": ["ptq"]}
    with pytest.raises(ConfigError, match=re.escape("kubeflow.resources.default.cpu: '2 cores' is not a Kubernetes CPU "
                                                    "quantity: give cores ('2', '0.5') or millicores ('500m')")):
        compiler.compile_config({**cfg, "kubeflow": {"resources": {"default": {"cpu": "2 cores"}}}},
                                tmp_path / "p.yaml", pipeline_root=ROOT)
    with pytest.raises(KfpError, match=re.escape("kubeflow.resources: Prunr: no such component class or node id "
                                                 "(this pipeline's classes: BaselineTrainer, FashionMnistExampleGen, "
                                                 "LeafEvaluator, NPUCompiler, Reporter, TFLiteConverter)")):
        compiler.compile_config({**cfg, "kubeflow": {"resources": {"Prunr": {"cpu": "2"}}}}, tmp_path / "p.yaml",
                                pipeline_root=ROOT)


KUBERNETES = "Kubernetes refuses a pod whose limit is below its request"


@pytest.mark.parametrize("kubeflow, message", [
    ({"resources": {"default": {"cpu": "0.0005"}}},
     "kubeflow.resources.default.cpu: '0.0005' is finer than a millicore (1m), which Kubernetes refuses"),
    ({"resources": {"default": {"cpu": "1000"}}}, "kubeflow.resources.default.cpu: '1000' is more than 512 cores: no "
                                                  "node has that many"),
    ({"resources": {"Pruner": {"memory": "1K"}}}, "kubeflow.resources.Pruner.memory: '1K' is not a Kubernetes memory "
     "quantity: give a number of bytes with a unit, e.g. '512Mi', '8Gi', '2G' (there is no 'K' suffix: use 'Ki')"),
    ({"resources": {"default": {"memory": "512"}}}, "kubeflow.resources.default.memory: '512' is 512 bytes, less than "
     "64Mi, too little for a task that imports TensorFlow (a unit missing? '512Mi', not '512')"),
    ({"resources": {"default": {"memory": "100Ti"}}}, "kubeflow.resources.default.memory: '100Ti' is more than 16Ti: no "
                                                      "node has that much"),
    ({"resources": {"default": {"cpu": "2", "cpu_limit": "1500m"}}},
     f"kubeflow.resources.default.cpu_limit: '1500m' is less than cpu '2': {KUBERNETES}"),
    ({"resources": {"default": {"memory": "8Gi"}, "Pruner": {"memory_limit": "4Gi"}}},
     f"kubeflow.resources.Pruner.memory_limit: '4Gi' is less than memory '8Gi' (of kubeflow.resources.default): "
     f"{KUBERNETES}"),
    ({"resources": {"default": {"node_selector": {"cloud.google.com/gke-nodepool": "gpu pool"}}}},
     "kubeflow.resources.default.node_selector.cloud.google.com/gke-nodepool: 'gpu pool' is not a Kubernetes label "
     "value: at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"),
    ({"resources": {"default": {"node_selector": {"Pool_Name.example/x": "a"}}}},
     "kubeflow.resources.default.node_selector.Pool_Name.example/x: 'Pool_Name.example/x': its prefix "
     "'Pool_Name.example' is not a DNS-1123 subdomain (lower case, e.g. example.com)"),
    ({"resources": {"PreservingQAT": {"accelerator": {"type": "gpu"}}}},
     "kubeflow.resources.PreservingQAT.accelerator.type: 'gpu' is not an extended resource Kubernetes schedules: give "
     "its qualified name, e.g. nvidia.com/gpu or amd.com/gpu"),
    ({"service_account": "Collabopt_Runner"}, "kubeflow.service_account: 'Collabopt_Runner' is not a Kubernetes name: "
     "lower-case letters, digits, '-' and '.', beginning and ending with a letter or digit (DNS-1123)"),
], ids=["sub-millicore", "1000-cores", "K-suffix", "no-unit", "100Ti", "cpu-limit", "limit-over-default", "label-value",
        "label-prefix", "accelerator", "service-account"])
def test_kubernetes_rules_are_checked_when_the_config_is_loaded(tmp_path, kubeflow, message):
    """What Kubernetes would refuse at pod creation is a config error naming the field, at compile time;
    nothing is written."""
    from collabopt.schemas import ConfigError
    with pytest.raises(ConfigError) as e:
        compiler.compile_config({**demo_raw(), "paths": ["ptq"], "kubeflow": kubeflow}, tmp_path / "p.yaml",
                                pipeline_root=ROOT)
    assert str(e.value) == f"invalid tree_config config:\n  {message}"
    assert not os.path.exists(tmp_path / "p.yaml")


def test_a_task_whose_layered_entries_put_a_limit_below_its_request_is_named(tmp_path):
    """Each entry alone is fine; laid over each other for the PCQAT task (its class's memory, its node
    id's limit) the limit is below the request: the compile fails naming the task and both entries."""
    kubeflow = {"resources": {"PreservingQAT": {"memory": "16Gi"}, "PCQAT": {"memory_limit": "10Gi"}}}
    with pytest.raises(KfpError) as e:
        compiler.compile_config({**demo_raw(), "kubeflow": kubeflow}, tmp_path / "p.yaml", pipeline_root=ROOT)
    assert str(e.value) == ("task PCQAT: kubeflow.resources.PCQAT.memory_limit: '10Gi' is less than memory '16Gi' "
                            f"(of kubeflow.resources.PreservingQAT): {KUBERNETES}")
    assert not os.path.exists(tmp_path / "p.yaml")
