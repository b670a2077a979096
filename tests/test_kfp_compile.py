"""Compiling to a Kubeflow Pipelines package: the package loads with kfp, its stable fields match a
golden file, what KFP cannot run is refused at compile time, RuntimeParameter defaults survive.

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

from collabopt.tests.kfp_fixtures import ROOT, RUN_CONFIG, demo_raw, packages, param_package  # noqa: F401

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
        for name, task in tasks.items():
            for p, v in task.get("inputs", {}).get("parameters", {}).items():
                assert "constant" in v.get("runtimeValue", {}), (name, p, v)
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
    assert npu == sorted(f"NPU_{p}" for p in tree_paths.PATHS)  # every path of the tree, one Vela compile each
    assert not [t for t, task in tasks.items() if "triggerPolicy" in task]  # no push: nothing conditional
    assert sorted(tasks["Reporter"]["inputs"]["artifacts"]) == sorted(tree_paths.PATHS)


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
    assert ast.literal_eval(out) == ["collabopt.kubeflow", "collabopt.kubeflow.client", "collabopt.kubeflow.compiler"]
