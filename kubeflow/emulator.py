"""Run a compiled Kubeflow Pipelines package without a cluster, task by task, through the same
container entrypoint KFP uses (compiler.ENTRYPOINT: TFX's kubeflow_v2_run_executor, given the
executor input KFP's driver would pass), importers and trigger conditions resolved as KFP's driver
does. That entrypoint records nothing in ML Metadata (on a cluster, KFP's launcher does), so the
lineage is recorded into a SQLite MLMD (emulator_mlmd), in the shape a LocalDagRunner run has.
Nothing on the compile or submit path imports this module.
"""
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys

from collabopt.kubeflow import KfpError, conditions
from collabopt.kubeflow.run_inputs import parse_params
from collabopt.kubeflow.compiler import load_package
from collabopt.kubeflow.emulator_mlmd import Mlmd, component_class, tfx_artifact


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

    mlmd = Mlmd(metadata_path, name, run_id)
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
    if condition and not conditions.evaluate(condition, executor_inputs):
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
        art = tfx_artifact(runtime, imp["typeSchema"])
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
    ex_id, contexts = mlmd.start(task_name, component_class(class_path), params, tfx_inputs)
    return pool.submit(_run_task, cmd, task_dir, env, output_file), ex_id, contexts, outputs


def _finish_task(task_name, ex_id, contexts, outputs, executor_output, results, artifacts, mlmd):
    """Merge the executor output's metadata into the outputs (as KFP's launcher does), record them."""
    done = {}
    for key, (runtime, art) in outputs.items():
        if executor_output is not None:
            produced = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
            runtime = dict(runtime, metadata=produced.get("metadata", {}))
            art = tfx_artifact(runtime, runtime["type"])
        done[key] = (runtime, art)
    published = mlmd.finish(ex_id, contexts, {k: [a] for k, (_, a) in done.items()})
    for key, (runtime, _) in done.items():
        art = published[key][0]
        runtime = dict(runtime, name=str(art.id))  # KFP passes the MLMD artifact id as the name
        artifacts[(task_name, key)] = (runtime, art)
        done[key] = runtime
    results[task_name] = {"state": "COMPLETE", "execution_id": ex_id, "outputs": done}
