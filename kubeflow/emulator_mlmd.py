"""The lineage of an emulated run (kubeflow.emulator), recorded as a LocalDagRunner run records it.
TFX's container entrypoint records nothing in ML Metadata (on a cluster, KFP's launcher does), so
the emulator records each task here, into a SQLite MLMD: contexts, one execution per task typed as
the component class, its artifacts as the TFX types the component declared."""
import importlib
import json
import logging

from collabopt.kubeflow import KfpError
from collabopt.kubeflow.compiler import schema_title

log = logging.getLogger(__name__)
_OURS = __name__.split(".")[0] + "."  # "collabopt.": executors whose component must be found


class Mlmd:
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


def tfx_artifact(runtime, type_schema):
    """A TFX Artifact from a KFP runtime artifact (uri, metadata). The executor output carries every
    number as a JSON double (TFX's entrypoint converts int properties), so integral numbers are
    restored as int properties, the way the component recorded them."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types import artifact as tfx_artifact
    from tfx.utils import import_utils

    title = schema_title(type_schema)
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


def component_class(executor_class_path):
    """The TFX component class whose executor this is (LocalDagRunner's execution type name): the one
    in the `component` module next to the executor's. Not finding collabopt's own is a KfpError (the
    execution would be recorded under the wrong type); another package's executor whose component
    module does not import is recorded under the executor's path, with a warning."""
    module, _, cls_name = executor_class_path.rpartition(".")
    if "." not in module:
        return executor_class_path
    comp_name = module.rpartition(".")[0] + ".component"
    ours = executor_class_path.startswith(_OURS)
    try:
        comp_module = importlib.import_module(comp_name)
    except ImportError as e:
        if ours:
            raise KfpError(f"executor {executor_class_path}: its component module {comp_name} does not import "
                           f"({e}), so its execution type is unknown") from e
        log.warning("executor %s: component module %s does not import (%s); recording its executions as "
                    "type %s", executor_class_path, comp_name, e, executor_class_path)
        return executor_class_path
    from tfx.dsl.components.base import base_component
    for obj in vars(comp_module).values():
        if (isinstance(obj, type) and issubclass(obj, base_component.BaseComponent)
                and obj.__module__ == comp_module.__name__
                and getattr(getattr(obj, "EXECUTOR_SPEC", None), "executor_class", type).__name__ == cls_name):
            return f"{obj.__module__}.{obj.__name__}"
    if ours:
        raise KfpError(f"executor {executor_class_path}: no component in {comp_name} runs it, so its execution "
                       "type is unknown")
    return executor_class_path
