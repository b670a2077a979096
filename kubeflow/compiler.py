"""Compile a TFX pipeline into a Kubeflow Pipelines v2 package, and read one back.

compile_pipeline: TFX's KubeflowV2DagRunner with pipeline-spec schema 2.1.0 (the only one the open
source KFP 2.x backend resolves: `parameterType`, `runtimeValue.constant`, `parameterValues`), plus
what TFX's YAML writer drops: RuntimeParameter defaults and the pipeline root (`defaultPipelineRoot`).
"""
import os
import re

import yaml

from collabopt.kubeflow import KfpError

ENTRYPOINT = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
PACKAGE_SUFFIXES = (".yaml", ".yml")  # what kfp.Client accepts besides .zip/.tar.gz archives


def default_image():
    from collabopt import __version__
    return f"collabopt:{__version__}"


def _runtime_parameter_defaults(pipeline):
    from tfx.orchestration import data_types
    out = {}
    for comp in pipeline.components:
        for value in comp.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter) and value.default is not None:
                out[value.name] = value.default
    return out


def compile_pipeline(pipeline, output, image=None, pipeline_root=None):
    """Compile `pipeline` (a tfx Pipeline built without metadata_connection_config) to the KFP package
    `output` (.yaml). Components run in `image` (default collabopt:<version>). The pipeline root
    (`pipeline_root`, else the pipeline's own if it is a URL such as gs://...) becomes the package's
    defaultPipelineRoot. Returns the PipelineSpec as a dict."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kdr

    output = str(output)
    if not output.endswith(PACKAGE_SUFFIXES):
        raise KfpError(f"KFP packages are YAML: the output must end in .yaml or .yml, got {output!r}")
    name = pipeline.pipeline_info.pipeline_name
    if pipeline.metadata_connection_config is not None:
        raise KfpError(f"pipeline {name!r} was built with a local ML Metadata connection; on Kubeflow Pipelines "
                       "MLMD is the cluster's: build it with metadata_path=None")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", name):
        raise KfpError(f"pipeline name {name!r}: KFP takes lowercase letters, digits and '-' (first a letter or "
                       "digit, at most 128)")
    config = kdr.KubeflowV2DagRunnerConfig(default_image=image or default_image(), use_pipeline_spec_2_1=True)
    try:
        job = kdr.KubeflowV2DagRunner(config).run(pipeline, write_out=False)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise KfpError(f"KubeflowV2DagRunner cannot compile pipeline {name!r}: {e}") from e
    spec = job["pipelineSpec"]
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    resolvers = sorted(t for t, task in spec["root"].get("dag", {}).get("tasks", {}).items()
                       if "resolver" in executors.get(spec["components"][task["componentRef"]["name"]]
                                                      ["executorLabel"], {}))
    if resolvers:  # KFP's argo compiler: "resolver executors not implemented" (Vertex AI only)
        raise KfpError(f"pipeline {name!r}: {', '.join(resolvers)} compile to resolver executors, which Kubeflow "
                       "Pipelines' open source backend rejects; feed those inputs another way on KFP "
                       "(baseline.pushed_models, an Importer of a URI, a RuntimeParameter)")
    _refer_conditions_to_declared_inputs(spec)
    root_params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for param, default in _runtime_parameter_defaults(pipeline).items():
        if param in root_params:
            root_params[param]["defaultValue"] = default
    root = pipeline_root or pipeline.pipeline_info.pipeline_root
    if root and "://" in str(root):
        spec["defaultPipelineRoot"] = str(root)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        f.write(f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                f"# Compiled by collabopt.kubeflow.compiler with TFX KubeflowV2DagRunner ({spec.get('sdkVersion')}),\n"
                f"# image {image or default_image()}\n")
        yaml.safe_dump(spec, f, sort_keys=True)
    from kfp import components
    try:
        components.load_component_from_file(output)
    except Exception as e:  # noqa: BLE001 - whatever kfp's loader objects to
        raise KfpError(f"{output}: the compiled package does not load with kfp: {e}") from e
    return spec


_CONDITION_INPUT = re.compile(r"inputs\.artifacts\['(_([^'.]+)\.([^']+))'\]")


def _refer_conditions_to_declared_inputs(spec):
    """A trigger condition names a channel by its implicit input `_<producer>.<key>`, which TFX adds to
    the task unless the task takes that channel already, under its own name. TFX 1.21 then means the
    condition to say that name, but the first time a predicate is encoded the implicit key preset by
    OutputChannel.future() wins: the condition names an input the task lacks, and KFP's driver cannot
    evaluate it (a LeafPusher under its own blessing, alone in its Cond). Such references are made
    to name the task's own input of that channel."""
    for task_name, task in spec["root"].get("dag", {}).get("tasks", {}).items():
        condition = task.get("triggerPolicy", {}).get("condition")
        if not condition:
            continue
        declared = spec["components"][task["componentRef"]["name"]].get("inputDefinitions", {}).get("artifacts", {})
        sources = {(src["taskOutputArtifact"]["producerTask"], src["taskOutputArtifact"]["outputArtifactKey"]): key
                   for key, src in task.get("inputs", {}).get("artifacts", {}).items() if "taskOutputArtifact" in src}

        def own(m):
            key, producer, output = m.groups()
            if key in declared:
                return m.group(0)
            if (producer, output) not in sources:
                raise KfpError(f"task {task_name}: its trigger condition reads {key}, which it has no input for")
            return f"inputs.artifacts['{sources[(producer, output)]}']"
        task["triggerPolicy"]["condition"] = _CONDITION_INPUT.sub(own, condition)


def load_package(package):
    """The PipelineSpec dict of a compiled package (.yaml/.yml, what kfp.Client uploads)."""
    package = str(package)
    if not os.path.isfile(package):
        raise KfpError(f"pipeline package {package!r} does not exist (compile one first: collabopt compile)")
    if not package.endswith(PACKAGE_SUFFIXES):
        raise KfpError(f"{package}: a KFP package must be .yaml or .yml")
    try:
        with open(package) as f:
            spec = next(iter(yaml.safe_load_all(f)), None)
    except yaml.YAMLError as e:
        raise KfpError(f"{package}: not valid YAML: {e}") from e
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise KfpError(f"{package}: not a compiled KFP pipeline spec (no root/pipelineInfo)")
    return spec


def schema_title(type_schema):
    """The artifact type title of a compiled type schema (schemaTitle, or the title in instanceSchema)."""
    if "schemaTitle" in type_schema:
        return type_schema["schemaTitle"]
    return (yaml.safe_load(type_schema.get("instanceSchema", "")) or {}).get("title", "tfx.Artifact")
