"""Kubeflow Pipelines: compile a TFX pipeline into a KFP v2 package, submit it or schedule it with
kfp.Client, and run a compiled package task by task on this machine, as KFP would.

- compile_pipeline: TFX's KubeflowV2DagRunner with pipeline-spec schema 2.1.0 (the only one the open
  source KFP 2.x backend resolves: `parameterType`, `runtimeValue.constant`, `parameterValues`), plus
  what TFX's YAML writer drops: RuntimeParameter defaults and the pipeline root (`defaultPipelineRoot`).
- submit / schedule: kfp.Client (v2beta1 REST API); every mistake that can be seen locally (package
  file, parameters, cron, concurrency) fails before any request, and API failures become KfpError.
- run_compiled_locally: every task of the compiled spec in topological order through the container
  entrypoint KFP runs (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`
  with the executor input KFP would pass), importers and trigger conditions resolved as KFP's driver
  does. That entrypoint records nothing in ML Metadata (on a cluster, KFP's launcher does), so the
  lineage is recorded here into a SQLite MLMD, in the shape a LocalDagRunner run has.
"""
import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import subprocess
import sys

import yaml

ENTRYPOINT = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
PACKAGE_SUFFIXES = (".yaml", ".yml")  # what kfp.Client accepts besides .zip/.tar.gz archives


class KfpError(Exception):
    """A problem compiling, submitting, scheduling or locally running a KFP package, in plain words."""


def default_image():
    from collabopt import __version__
    return f"collabopt:{__version__}"


# ----------------------------------------------------------------------------------------------- compile

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
                f"# Compiled by collabopt.kfp_runner with TFX KubeflowV2DagRunner ({spec.get('sdkVersion')}),\n"
                f"# image {image or default_image()}\n")
        yaml.safe_dump(spec, f, sort_keys=True)
    from kfp import components
    try:
        components.load_component_from_file(output)
    except Exception as e:  # noqa: BLE001 - whatever kfp's loader objects to
        raise KfpError(f"{output}: the compiled package does not load with kfp: {e}") from e
    return spec


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


# ------------------------------------------------------------------------------------- parameters, cron

def _typed(name, value, ptype):
    try:
        if ptype == "NUMBER_INTEGER":
            return int(value)
        if ptype == "NUMBER_DOUBLE":
            return float(value)
        if ptype == "BOOLEAN":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0"):
                return str(value).lower() in ("true", "1")
            raise ValueError(value)
        if ptype in ("LIST", "STRUCT"):
            return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise KfpError(f"parameter {name}={value!r}: not a valid {ptype}") from None
    return str(value)


def parse_params(params, spec):
    """{name: value} or ["name=value", ...] -> the run's parameters, typed as the package declares them.
    Unknown names and malformed items are errors."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    items = {}
    if isinstance(params, dict):
        items = dict(params)
    else:
        for item in params or ():
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise KfpError(f"--param {item!r}: expected NAME=VALUE")
            items[name.strip()] = value
    unknown = sorted(set(items) - set(declared))
    if unknown:
        raise KfpError(f"unknown pipeline parameter(s) {unknown}; this package takes "
                       f"{', '.join(sorted(declared)) or 'no parameters'}")
    return {k: _typed(k, v, declared[k].get("parameterType", "STRING")) for k, v in items.items()}


# KFP's scheduled workflows use robfig/cron: six fields, seconds first, or a descriptor.
CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
               ("month", 1, 12), ("day of week", 0, 6))
_NAMES = {4: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          5: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _cron_value(text, i):
    name, lo, hi = CRON_FIELDS[i]
    low = text.lower()
    if i in _NAMES and low in _NAMES[i]:
        return _NAMES[i].index(low) + (1 if i == 4 else 0)
    if not text.isdigit():
        raise KfpError(f"cron {name} field: {text!r} is not a number")
    v = int(text)
    if not lo <= v <= hi:
        raise KfpError(f"cron {name} field: {v} is outside {lo}-{hi}")
    return v


def validate_cron(cron):
    """A cron expression KFP accepts (6 fields: second minute hour day-of-month month day-of-week,
    or @daily, @every 1h, ...), else KfpError saying what is wrong."""
    expr = str(cron or "").strip()
    if expr.startswith("@"):
        if expr in _DESCRIPTORS or (expr.startswith("@every ") and _DURATION.match(expr[7:].strip())):
            return expr
        raise KfpError(f"cron {expr!r}: unknown descriptor (use {', '.join(_DESCRIPTORS)} or '@every 1h30m')")
    fields = expr.split()
    if len(fields) != 6:
        hint = (f"; KFP's first field is seconds: did you mean '0 {expr}'?" if len(fields) == 5 else "")
        raise KfpError(f"cron {expr!r} has {len(fields)} fields, KFP needs 6 (second minute hour "
                       f"day-of-month month day-of-week){hint}")
    for i, field in enumerate(fields):
        for part in field.split(","):
            rng, _, step = part.partition("/")
            if _ and not (step.isdigit() and int(step) > 0):
                raise KfpError(f"cron {CRON_FIELDS[i][0]} field: step {step!r} must be a positive integer")
            if rng in ("*", "?"):
                continue
            start, dash, end = rng.partition("-")
            a = _cron_value(start, i)
            if dash and _cron_value(end, i) < a:
                raise KfpError(f"cron {CRON_FIELDS[i][0]} field: range {rng!r} runs backwards")
    return expr


# ----------------------------------------------------------------------------------------- kfp.Client

@contextlib.contextmanager
def _api_errors(host):
    """kfp.Client failures as KfpError naming the host."""
    import kfp_server_api
    import urllib3
    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError) as e:  # MaxRetryError: refused, DNS, timeout
        raise KfpError(f"cannot reach Kubeflow Pipelines at {host}: {getattr(e, 'reason', None) or e}") from e
    except kfp_server_api.ApiException as e:
        body = (e.body or "").strip()
        try:
            body = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            pass
        raise KfpError(f"Kubeflow Pipelines at {host} refused the request: HTTP {e.status} {e.reason}: "
                       f"{body}") from e
    except TimeoutError as e:  # kfp.Client gives up on /healthz after 5 tries
        raise KfpError(f"no Kubeflow Pipelines API answers at {host}: {e}") from e


def _client(host):
    import warnings

    import kfp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2+"
        return kfp.Client(host=host)  # asks /apis/v2beta1/healthz whether KFP is multi-user


def _prepare(package, params, pipeline_root):
    spec = load_package(package)
    values = parse_params(params, spec)
    root = pipeline_root or spec.get("defaultPipelineRoot")
    if not root:
        raise KfpError(f"{package}: no pipeline root: pass one (e.g. gs://bucket/root); TFX components write "
                       "their artifacts with tf.io.gfile, which cannot write to KFP's default minio:// root")
    return spec, values, root


def submit(package, host, experiment=None, params=None, pipeline_root=None, run_name=None):
    """One run of the compiled `package` on the KFP at `host` (kfp.Client.create_run_from_pipeline_package).
    Returns the run id."""
    spec, values, root = _prepare(package, params, pipeline_root)
    name = run_name or f"{spec['pipelineInfo']['name']} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    with _api_errors(host):
        result = _client(host).create_run_from_pipeline_package(
            str(package), arguments=values, run_name=name, experiment_name=experiment, pipeline_root=root)
    return result.run_id


def schedule(package, host, cron, max_concurrency=1, experiment=None, params=None, name=None,
             pipeline_root=None):
    """A KFP recurring run of `package` on `cron` (6 fields, seconds first). Returns its id."""
    cron = validate_cron(cron)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 10:
        raise KfpError(f"max_concurrency must be an integer 1-10 (KFP's limit), got {max_concurrency!r}")
    spec, values, root = _prepare(package, params, pipeline_root)
    name = name or f"{spec['pipelineInfo']['name']} ({cron})"
    with _api_errors(host):
        client = _client(host)
        exp = client.create_experiment(experiment or "Default")
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, max_concurrency=max_concurrency,
            no_catchup=True, params=values, pipeline_package_path=str(package), pipeline_root=root)
    return job.recurring_run_id


# ------------------------------------------------------------------------------ task-by-task local run

def _order(tasks):
    """Topological order of the DAG's tasks (dependentTasks and artifact/parameter producers)."""
    deps = {name: set(_upstream(t)) for name, t in tasks.items()}
    missing = {d for ds in deps.values() for d in ds} - set(tasks)
    if missing:
        raise KfpError(f"the spec's tasks depend on unknown task(s) {sorted(missing)}")
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and deps[n] <= done)
        if not ready:
            raise KfpError(f"the spec's tasks form a cycle: {sorted(set(tasks) - done)}")
        order += ready
        done |= set(ready)
    return order, deps


def _upstream(task):
    out = set(task.get("dependentTasks", []))
    for spec in task.get("inputs", {}).get("artifacts", {}).values():
        if "taskOutputArtifact" in spec:
            out.add(spec["taskOutputArtifact"]["producerTask"])
    for spec in task.get("inputs", {}).get("parameters", {}).values():
        if "taskOutputParameter" in spec:
            out.add(spec["taskOutputParameter"]["producerTask"])
    return out


# TFX compiles conditionals to this CEL subset (compiler_utils.placeholder_to_cel): artifact metadata,
# uri, parameter values, literals, == < > ! && || +. Translated token by token to Python, nothing else.
_CEL_TOKEN = re.compile(r"\s*(?:(?P<str>'[^']*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\].+-])"
                        r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
_CEL_NAMES = {"inputs", "artifacts", "metadata", "uri", "parameter_values", "true", "false"}


class _Obj(dict):
    __getattr__ = dict.__getitem__


def _condition(expr, inputs):
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _CEL_TOKEN.match(expr, pos)
        if not m:
            raise KfpError(f"trigger condition {expr!r}: cannot read it at {expr[pos:]!r}")
        pos = m.end()
        tok = m.group(m.lastgroup)
        if m.lastgroup == "name" and tok not in _CEL_NAMES:
            raise KfpError(f"trigger condition {expr!r}: unsupported name {tok!r}")
        out.append({"&&": " and ", "||": " or ", "!": " not ", "true": "True", "false": "False"}.get(tok, tok))
    arts = _Obj({k: _Obj(artifacts=[_Obj(metadata=a.get("metadata", {}), uri=a["uri"]) for a in v["artifacts"]])
                 for k, v in inputs["artifacts"].items()})
    scope = {"inputs": _Obj(artifacts=arts, parameter_values=_Obj(inputs["parameterValues"]))}
    try:
        return bool(eval("".join(out), {"__builtins__": {}}, scope))  # noqa: S307 - whitelisted tokens only
    except (KeyError, IndexError, TypeError) as e:
        raise KfpError(f"trigger condition {expr!r} cannot be evaluated: {e!r}") from e


def _schema_title(type_schema):
    if "schemaTitle" in type_schema:
        return type_schema["schemaTitle"]
    return (yaml.safe_load(type_schema.get("instanceSchema", "")) or {}).get("title", "tfx.Artifact")


class _Mlmd:
    """Records a run in a SQLite MLMD as LocalDagRunner does: contexts pipeline / pipeline_run (child
    of pipeline) / node "<pipeline>.<task>", one execution per task (type: the component class, its
    parameters as properties), INPUT/OUTPUT events keyed like the component's channels."""

    def __init__(self, path, pipeline_name, run_id):
        from tfx.orchestration import metadata
        from tfx.orchestration.portable.mlmd import context_lib
        self._handle = metadata.Metadata(metadata.sqlite_metadata_connection_config(str(path)))
        self._handle.__enter__()
        self._ctx = context_lib
        self.pipeline_name = pipeline_name
        pipe = context_lib.register_context_if_not_exists(self._handle, "pipeline", pipeline_name)
        run = context_lib.register_context_if_not_exists(self._handle, "pipeline_run", run_id, [pipe])
        self._run_contexts = [pipe, run]

    def close(self):
        self._handle.__exit__(None, None, None)

    def start(self, task, type_name, params, inputs):
        from ml_metadata.proto import metadata_store_pb2
        from tfx.orchestration.portable import execution_publish_utils
        node = self._ctx.register_context_if_not_exists(self._handle, "node", f"{self.pipeline_name}.{task}")
        contexts = [*self._run_contexts, node]
        props = {k: (json.dumps(v) if isinstance(v, (list, dict)) else int(v) if isinstance(v, bool) else v)
                 for k, v in params.items()}
        execution = execution_publish_utils.register_execution(
            self._handle, metadata_store_pb2.ExecutionType(name=type_name), contexts,
            input_artifacts=inputs, exec_properties=props)
        return execution.id, contexts

    def finish(self, execution_id, contexts, outputs):
        """Marks the execution COMPLETE with its outputs; returns them as published (ids set)."""
        from tfx.orchestration.portable import execution_publish_utils
        published, _ = execution_publish_utils.publish_succeeded_execution(
            self._handle, execution_id, contexts, outputs)
        return published

    def fail(self, execution_id, contexts, message):
        from tfx.orchestration.portable import execution_publish_utils
        from tfx.proto.orchestration import execution_result_pb2
        result = execution_result_pb2.ExecutorOutput()
        result.execution_result.result_message = message[-2000:]
        execution_publish_utils.publish_failed_execution(self._handle, contexts, execution_id, result)

    def find(self, uri, type_name):
        return [a for a in self._handle.store.get_artifacts_by_uri(uri)
                if self._handle.store.get_artifact_types_by_id([a.type_id])[0].name == type_name]


def _tfx_artifact(runtime, type_schema):
    """A TFX Artifact from a KFP runtime artifact (uri, metadata). The executor output carries every
    number as a JSON double (TFX's entrypoint converts int properties), so integral numbers are
    restored as int properties, the way the component recorded them."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types import artifact as tfx_artifact
    from tfx.utils import import_utils

    title = _schema_title(type_schema)
    cls = import_utils.import_class_by_path(compiler_utils.TITLE_TO_CLASS_PATH.get(title, title))
    art = cls()
    art.uri = runtime["uri"]
    declared, prefix = art.artifact_type.properties, tfx_artifact.CUSTOM_PROPERTIES_PREFIX
    for key, value in (runtime.get("metadata") or {}).items():
        if key.startswith(prefix) and key[len(prefix):] in declared:  # a custom property named like a property
            key, declared_here = key[len(prefix):], False
        else:
            declared_here = key in declared and not isinstance(value, (dict, list))
        if declared_here:
            target = art.mlmd_artifact.properties[key]
            if declared[key] == metadata_store_pb2.INT:
                target.int_value = int(value)
            elif declared[key] == metadata_store_pb2.DOUBLE:
                target.double_value = float(value)
            else:
                target.string_value = str(value)
        elif isinstance(value, bool):
            art.set_int_custom_property(key, int(value))
        elif isinstance(value, (int, float)):
            if float(value).is_integer() and abs(value) < 2 ** 63:
                art.set_int_custom_property(key, int(value))
            else:
                art.set_float_custom_property(key, float(value))
        elif isinstance(value, str):
            art.set_string_custom_property(key, value)
        elif value is not None:
            art.set_json_value_custom_property(key, value)
    return art


def _component_class(executor_class_path):
    """The TFX component class whose executor this is (LocalDagRunner's execution type name): the
    `component` module next to the executor's, else the executor path itself."""
    import importlib
    module, _, cls_name = executor_class_path.rpartition(".")
    if "." not in module:
        return executor_class_path
    try:
        comp_module = importlib.import_module(module.rpartition(".")[0] + ".component")
    except ImportError:
        return executor_class_path
    from tfx.dsl.components.base import base_component
    for obj in vars(comp_module).values():
        if (isinstance(obj, type) and issubclass(obj, base_component.BaseComponent)
                and obj.__module__ == comp_module.__name__
                and getattr(getattr(obj, "EXECUTOR_SPEC", None), "executor_class", type).__name__ == cls_name):
            return f"{obj.__module__}.{obj.__name__}"
    return executor_class_path


def _task_params(task, component, root_params):
    out = {}
    for name, spec in task.get("inputs", {}).get("parameters", {}).items():
        if "runtimeValue" in spec:
            if "constant" not in spec["runtimeValue"]:
                raise KfpError(f"parameter {name}: {spec['runtimeValue']} is schema 2.0 (KFP 2.x needs 'constant')")
            out[name] = spec["runtimeValue"]["constant"]
        elif "componentInputParameter" in spec:
            out[name] = root_params[spec["componentInputParameter"]]
        else:  # taskOutputParameter: TFX compiles ValueArtifacts so; none of our components has one
            raise KfpError(f"parameter {name}: unsupported input spec {sorted(spec)}")
    types = component.get("inputDefinitions", {}).get("parameters", {})
    return {k: (int(v) if types.get(k, {}).get("parameterType") == "NUMBER_INTEGER" and isinstance(v, float) else v)
            for k, v in out.items()}


def _container_command(container, executor_input, python):
    cmd = [python if i == 0 and c == "python" else c for i, c in enumerate(container.get("command", []))]
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container.get("args", [])]
    odd = [a for a in args if "{{$" in a]
    if odd:
        raise KfpError(f"container args hold placeholders this runner does not fill: {odd}")
    if container.get("lifecycle"):
        raise KfpError("container lifecycle hooks (a FileBasedExampleGen driver) are Vertex-only: not supported")
    return cmd + args


def _run_task(cmd, task_dir, env, output_file):
    log = os.path.join(task_dir, "log.txt")
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=task_dir, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log) as f:
            tail = "".join(f.readlines()[-25:])
        return False, f"exit code {proc.returncode}; log {log}:\n{tail}"
    if not os.path.isfile(output_file):
        return False, f"the entrypoint wrote no executor output ({output_file})"
    with open(output_file) as f:
        return True, json.load(f)


def run_compiled_locally(package, pipeline_root, metadata_path, params=None, run_id=None, tasks=None,
                         workers=1, python=None, env=None):
    """Run a compiled KFP package here, task by task, as KFP would: each container task through its
    own command and args (`python` is this interpreter) with `{{$}}` replaced by the executor input
    KFP's driver builds (input artifacts from upstream outputs, parameters, output URIs
    <pipeline_root>/<pipeline>/<run_id>/<task>/<output key>, output file executor_output.json next to
    them); importer tasks and trigger conditions resolved here as KFP's driver and launcher do; the
    lineage recorded in the SQLite MLMD at `metadata_path`. `tasks`: only these (closed under their
    upstream). `workers`: tasks run at once. Returns {"run_id", "run_root", "tasks": {task:
    {"state": COMPLETE|SKIPPED, "outputs": {key: runtime artifact}}}}. Raises KfpError on a failed task.
    """
    spec = load_package(package)
    dag = spec["root"].get("dag", {}).get("tasks", {})
    order, deps = _order(dag)
    if tasks is not None:
        tasks = set(tasks)
        unknown, open_ = tasks - set(dag), {d for t in tasks & set(dag) for d in deps[t]} - tasks
        if unknown or open_:
            raise KfpError(f"tasks: unknown {sorted(unknown)}, missing upstream {sorted(open_)}")
        order = [t for t in order if t in tasks]
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    root_params = {k: v["defaultValue"] for k, v in declared.items() if "defaultValue" in v}
    root_params.update(parse_params(params, spec))
    missing = sorted(set(declared) - set(root_params))
    if missing:
        raise KfpError(f"pipeline parameter(s) {missing} have no value and no default")
    name = spec["pipelineInfo"]["name"]
    run_id = run_id or datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_root = f"{str(pipeline_root).rstrip('/')}/{name}/{run_id}"
    python = python or sys.executable
    env = dict(os.environ if env is None else env, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    executors = spec.get("deploymentSpec", {}).get("executors", {})

    mlmd = _Mlmd(metadata_path, name, run_id)
    results, artifacts = {}, {}  # task -> result; (task, key) -> (runtime artifact, tfx artifact)
    pending, running, failure = list(order), {}, None
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, int(workers))) as pool:
            while (pending and failure is None) or running:
                for task_name in list(pending):
                    if failure is not None or len(running) >= max(1, int(workers)):
                        break
                    if not deps[task_name] <= set(results):
                        continue
                    pending.remove(task_name)
                    started = _start_task(task_name, dag[task_name], spec, executors, deps, results, artifacts,
                                          root_params, run_root, mlmd, python, env, pool)
                    if started is not None:
                        running[started[0]] = (task_name, *started[1:])
                if not running:
                    if pending and failure is None and not any(deps[t] <= set(results) for t in pending):
                        raise KfpError(f"tasks {pending} can never run")
                    continue
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in finished:
                    task_name, ex_id, contexts, outputs = running.pop(fut)
                    ok, result = fut.result()
                    if not ok:
                        mlmd.fail(ex_id, contexts, result)
                        failure = failure or KfpError(f"task {task_name} failed: {result}")
                        continue
                    _finish_task(task_name, ex_id, contexts, outputs, result, results, artifacts, mlmd)
    finally:
        mlmd.close()
    if failure is not None:
        raise failure
    return {"run_id": run_id, "run_root": run_root, "tasks": results}


def _start_task(task_name, task, spec, executors, deps, results, artifacts, root_params, run_root, mlmd,
                python, env, pool):
    """Resolve a task's inputs as KFP's driver does; run importers here and containers in `pool`.
    Returns (future, execution id, contexts, outputs) for a started container, else None."""
    component = spec["components"][task["componentRef"]["name"]]
    executor = executors[component["executorLabel"]]
    if any(results[d]["state"] == "SKIPPED" for d in deps[task_name]):
        results[task_name] = {"state": "SKIPPED", "reason": "an upstream task was skipped", "outputs": {}}
        return None
    params = _task_params(task, component, root_params)
    inputs = {}
    for key, src in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in src:
            raise KfpError(f"task {task_name}: input {key}: only upstream task outputs are supported, got {src}")
        out = src["taskOutputArtifact"]
        inputs[key] = artifacts[(out["producerTask"], out["outputArtifactKey"])]
    condition = task.get("triggerPolicy", {}).get("condition")
    executor_inputs = {"parameterValues": params,
                       "artifacts": {k: {"artifacts": [rt]} for k, (rt, _) in inputs.items()}}
    if condition and not _condition(condition, executor_inputs):
        results[task_name] = {"state": "SKIPPED", "reason": f"condition {condition} is false", "outputs": {}}
        return None
    outputs_def = component.get("outputDefinitions", {}).get("artifacts", {})
    task_dir = f"{run_root}/{task_name}"
    tfx_inputs = {k: [art] for k, (_, art) in inputs.items()}

    if "importer" in executor:
        imp = executor["importer"]
        uri_spec = imp["artifactUri"]
        uri = params[uri_spec["runtimeParameter"]] if "runtimeParameter" in uri_spec else uri_spec["constant"]
        [key] = outputs_def
        runtime = {"uri": uri, "type": imp["typeSchema"], "metadata": dict(imp.get("metadata", {}))}
        art = _tfx_artifact(runtime, imp["typeSchema"])
        ex_id, contexts = mlmd.start(task_name, "tfx.dsl.components.common.importer.Importer", params, {})
        existing = [] if imp.get("reimport") else mlmd.find(uri, art.type_name)
        if existing:  # reimport=False: the artifact already registered for this uri
            art.set_mlmd_artifact(existing[-1])
        _finish_task(task_name, ex_id, contexts, {key: (runtime, art)}, None, results, artifacts, mlmd)
        return None
    if "container" not in executor:
        raise KfpError(f"task {task_name}: executor kind {sorted(executor)} is not supported here (resolver "
                       "nodes query Vertex ML Metadata; KFP's open source backend does not run them either)")

    os.makedirs(task_dir, exist_ok=True)
    output_file = f"{task_dir}/executor_output.json"
    outputs = {key: ({"uri": f"{task_dir}/{key}", "type": d["artifactType"], "metadata": {}}, None)
               for key, d in outputs_def.items()}
    executor_input = {"inputs": executor_inputs,
                      "outputs": {"artifacts": {k: {"artifacts": [rt]} for k, (rt, _) in outputs.items()},
                                  "outputFile": output_file}}
    with open(f"{task_dir}/executor_input.json", "w") as f:  # what {{$}} became, for inspection
        json.dump(executor_input, f, indent=1)
    cmd = _container_command(executor["container"], executor_input, python)
    class_path = cmd[cmd.index("--executor_class_path") + 1] if "--executor_class_path" in cmd else task_name
    ex_id, contexts = mlmd.start(task_name, _component_class(class_path), params, tfx_inputs)
    return pool.submit(_run_task, cmd, task_dir, env, output_file), ex_id, contexts, outputs


def _finish_task(task_name, ex_id, contexts, outputs, executor_output, results, artifacts, mlmd):
    """Merge the executor output's metadata into the outputs (as KFP's launcher does), record them."""
    done = {}
    for key, (runtime, art) in outputs.items():
        if executor_output is not None:
            produced = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
            runtime = dict(runtime, metadata=produced.get("metadata", {}))
            art = _tfx_artifact(runtime, runtime["type"])
        done[key] = (runtime, art)
    published = mlmd.finish(ex_id, contexts, {k: [a] for k, (_, a) in done.items()})
    for key, (runtime, _) in done.items():
        art = published[key][0]
        runtime = dict(runtime, name=str(art.id))  # KFP passes the MLMD artifact id as the name
        artifacts[(task_name, key)] = (runtime, art)
        done[key] = runtime
    results[task_name] = {"state": "COMPLETE", "execution_id": ex_id, "outputs": done}
