"""Compile a TFX pipeline into a Kubeflow Pipelines v2 package, and read one back.

compile_config: a deployment-tree config -> a package whose run-to-run settings (RUNTIME_PARAMETERS)
are pipeline parameters and whose tasks carry the config's `kubeflow` section (resources, node
selectors, caching; the service account for submit/schedule); local paths refused unless allowed.
compile_pipeline: TFX's KubeflowV2DagRunner with pipeline-spec schema 2.1.0 (the only one the open
source KFP 2.x backend resolves: `parameterType`, `runtimeValue.constant`, `parameterValues`), plus
what TFX's YAML writer drops: RuntimeParameter defaults and the pipeline root (`defaultPipelineRoot`).
"""
import json
import os
import re

import yaml

from collabopt.kubeflow import KfpError
from collabopt.schemas import kubernetes

ENTRYPOINT = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
PACKAGE_SUFFIXES = (".yaml", ".yml")  # what kfp.Client accepts besides .zip/.tar.gz archives


def default_image():
    from collabopt import __version__
    return f"collabopt:{__version__}"


# What changes run to run: config keys (a whole section: its JSON) that compile_config makes pipeline
# parameters, named with "_" for "." (submit/schedule --param prune_epochs=3), the config's values
# their defaults. A key whose value is null is left out: the pipeline is built without its use (no
# pusher without push.destination, no importer without examples.uri, ...).
RUNTIME_PARAMETERS = ("data.train_limit", "data.eval_limit", "baseline.epochs", "prune.epochs", "cluster.epochs",
                      "qat.epochs", "requirements", "push.destination", "examples.uri", "baseline.model_uri",
                      "baseline.pushed_models")
CONFIG_KEY_PREFIX = "collabopt config key "  # a parameter's description: which config key it sets
LOCAL_PATH_KEYS = ("baseline.model_uri", "baseline.pushed_models", "examples.uri", "push.destination")


def parameter_name(key):
    return key.replace(".", "_")


def config_key(parameter_spec):
    """The config key a compiled package's root parameter sets (from its description), or None."""
    text = parameter_spec.get("description", "")
    return text[len(CONFIG_KEY_PREFIX):] if text.startswith(CONFIG_KEY_PREFIX) else None


def _config_value(cfg, key):
    section, _, name = key.partition(".")
    return cfg[section].get(name) if name else cfg[section]


def runtime_parameters(cfg):
    """{config key: TFX RuntimeParameter} for the RUNTIME_PARAMETERS a merged config sets."""
    from tfx.orchestration import data_types
    out = {}
    for key in RUNTIME_PARAMETERS:
        value = _config_value(cfg, key)
        if isinstance(value, dict):
            value = json.dumps({k: v for k, v in value.items() if v is not None}, sort_keys=True)
        if value is not None:
            out[key] = data_types.RuntimeParameter(name=parameter_name(key), ptype=type(value), default=value,
                                                   description=CONFIG_KEY_PREFIX + key)
    return out


def local_paths(cfg):
    """The LOCAL_PATH_KEYS a merged config sets to a path without a scheme (what a task's container
    cannot see unless it is in the image or a mounted volume), as "key 'value'" strings."""
    return [f"{key} {_config_value(cfg, key)!r}" for key in LOCAL_PATH_KEYS
            if _config_value(cfg, key) and "://" not in _config_value(cfg, key)]


def compile_config(config, output, image=None, pipeline_root=None, allow_local_paths=False, search=False):
    """A deployment-tree config (a dict or a merged config) -> the KFP package `output`: the tree as
    tree.create_pipeline builds it for KFP (no local MLMD, no local report folder), the
    RUNTIME_PARAMETERS as pipeline parameters, the `kubeflow` section applied. A local path among
    LOCAL_PATH_KEYS is refused unless `allow_local_paths`. With `search`, the first round of the
    config's search instead (search/trials.py: its trials are parallel tasks; no runtime
    parameters). Returns the PipelineSpec as a dict."""
    from collabopt.pipelines import config as tree_config, tree
    from collabopt.search import trials

    cfg = tree_config.merge(config)
    local = local_paths(cfg)
    if local and not allow_local_paths:
        raise KfpError(f"local path(s) in a KFP package: {', '.join(local)}: a task runs in its own container "
                       "and sees none of this machine's files; use URIs (gs://, s3://, ...), or pass "
                       "--allow-local-paths if these are paths in the image or a mounted volume")
    if search:
        pipe = trials.create_round(cfg, *trials.first_round(cfg), pipeline_root or "",
                                   enable_cache=False).pipeline  # KFP caching: the kubeflow section
    else:
        pipe = tree.create_pipeline(cfg, pipeline_root or "", metadata_path=None, publish_dir="",
                                    parameters=runtime_parameters(cfg))
    return compile_pipeline(pipe, output, image=image, pipeline_root=pipeline_root, kubeflow=cfg["kubeflow"])


def _runtime_parameters(pipeline):
    from tfx.orchestration import data_types
    return {value.name: value for comp in pipeline.components for value in comp.exec_properties.values()
            if isinstance(value, data_types.RuntimeParameter)}


def compile_pipeline(pipeline, output, image=None, pipeline_root=None, kubeflow=None):
    """Compile `pipeline` (a tfx Pipeline built without metadata_connection_config) to the KFP package
    `output` (.yaml). Components run in `image` (default collabopt:<version>). The pipeline root
    (`pipeline_root`, else the pipeline's own if it is a URL such as gs://...) becomes the package's
    defaultPipelineRoot. `kubeflow`: a config's `kubeflow` section (resources, node selectors,
    caching, service account). Returns the PipelineSpec as a dict."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kdr
    from collabopt import schemas

    kubeflow = dict(kubeflow or {})
    try:
        schemas.check({"kubeflow": kubeflow})
    except schemas.ConfigError as e:
        raise KfpError(str(e)) from None

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
    for param, rp in _runtime_parameters(pipeline).items():
        if param in root_params and rp.default is not None:
            root_params[param]["defaultValue"] = rp.default
        if param in root_params and rp.description:
            root_params[param]["description"] = rp.description
    root = pipeline_root or pipeline.pipeline_info.pipeline_root
    if root and "://" in str(root):
        spec["defaultPipelineRoot"] = str(root)
    platform = _apply_kubeflow(spec, kubeflow, {c.id: type(c).__name__ for c in pipeline.components})
    run_options = {k: kubeflow[k] for k in RUN_OPTIONS if kubeflow.get(k) is not None}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        f.write(f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                f"# Compiled by collabopt.kubeflow.compiler with TFX KubeflowV2DagRunner ({spec.get('sdkVersion')}),\n"
                f"# image {image or default_image()}\n")
        if run_options:
            f.write(f"{RUN_OPTIONS_COMMENT}{json.dumps(run_options, sort_keys=True)}\n")
        yaml.safe_dump_all([spec, platform] if platform else [spec], f, sort_keys=True)
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2
    try:
        components.load_component_from_file(output)
        # The spec holds its deployment config as a Struct, which nothing checks: resources and all.
        json_format.ParseDict(spec.get("deploymentSpec", {}), pipeline_spec_pb2.PipelineDeploymentConfig())
    except Exception as e:  # noqa: BLE001 - whatever kfp's loader objects to
        raise KfpError(f"{output}: the compiled package does not load with kfp: {e}") from e
    return spec


# Run-level settings of the config's `kubeflow` section: no pipeline-spec field holds them, so the
# package carries them in a header comment that submit/schedule read (run_options) and pass to KFP.
RUN_OPTIONS = ("service_account",)
RUN_OPTIONS_COMMENT = "# collabopt run options: "


def run_options(package):
    """The run options compiled into `package` ({} if none)."""
    with open(str(package)) as f:
        for line in f:
            if not line.startswith("#"):
                break
            if line.startswith(RUN_OPTIONS_COMMENT):
                try:
                    return dict(json.loads(line[len(RUN_OPTIONS_COMMENT):]))
                except (ValueError, TypeError):
                    raise KfpError(f"{package}: its run options line is not a JSON object: {line.strip()}") from None
    return {}


def _resource_spec(entry):
    """A `kubeflow.resources` entry -> PipelineContainerSpec.ResourceSpec, as kfp's own compiler
    writes it: the resource* strings (what KFP 2.x reads) and the older numeric fields."""
    from kfp.compiler import compiler_utils
    out = {}
    for key, field, number in (("cpu", "CpuRequest", compiler_utils._cpu_to_float),
                               ("cpu_limit", "CpuLimit", compiler_utils._cpu_to_float),
                               ("memory", "MemoryRequest", compiler_utils._memory_to_float),
                               ("memory_limit", "MemoryLimit", compiler_utils._memory_to_float)):
        if entry.get(key):
            out["resource" + field] = entry[key]
            out[field[0].lower() + field[1:]] = number(entry[key])
    if entry.get("accelerator"):
        kind, count = entry["accelerator"]["type"], str(entry["accelerator"].get("count", 1))
        out["accelerator"] = {"resourceType": kind, "resourceCount": count, "type": kind, "count": count}
    return out


def _apply_kubeflow(spec, kubeflow, classes):
    """Resources and node selectors per task (its node id's entry, else its component class's, else
    `default`, field by field) and caching, written into `spec`; returns the platform spec (the
    package's second document) holding the node selectors, or None."""
    resources = kubeflow.get("resources") or {}
    tasks = spec["root"].get("dag", {}).get("tasks", {})
    unknown = sorted(set(resources) - {"default"} - set(tasks) - set(classes.values()) - set(_component_classes()))
    if unknown:
        raise KfpError(f"kubeflow.resources: {', '.join(unknown)}: no such component class or node id (this "
                       f"pipeline's classes: {', '.join(sorted(set(classes.values())))})")
    executors, selectors = spec.get("deploymentSpec", {}).get("executors", {}), {}
    for name, task in sorted(tasks.items()):
        if kubeflow.get("enable_caching"):
            task["cachingOptions"] = {"enableCache": True}
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = executors.get(label, {}).get("container")
        if container is None:  # an importer: KFP's driver does the work, no pod
            continue
        layers = [(k, resources[k]) for k in ("default", classes.get(name), name) if k in resources]
        entry = {f: v for _, e in layers for f, v in e.items()}
        problems = kubernetes.limit_problems(entry, lambda f: next(
            f"kubeflow.resources.{k}" for k, e in reversed(layers) if f in e))  # the entry that set the field
        if problems:
            raise KfpError(f"task {name}: " + "; ".join(problems))
        if _resource_spec(entry):
            container["resources"] = _resource_spec(entry)
        if entry.get("node_selector"):
            selectors[label] = {"nodeSelector": {"labels": dict(entry["node_selector"])}}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": selectors}}}} if selectors else None


def _component_classes():
    """collabopt's component classes (a config may name one its paths do not build)."""
    from collabopt import components
    return [name for name, module in components._WHERE.items() if module.endswith(".component")]


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
