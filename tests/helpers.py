"""What the test modules share (the suite's and each component's own): small configs, pipeline runs,
MLMD look-ups, hand-built artifacts and tiny models. Fixtures live in tests/conftest.py."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from collabopt import results  # noqa: E402

# Small but real: enough for the baseline to learn (~70%) and for every stage to run.
TREE_CONFIG = {
    "name": "tree-test",
    "paths": "all",
    "data": {"train_limit": 2000, "eval_limit": 500},
    "baseline": {"epochs": 3},
    "prune": {"target_sparsity": 0.5, "epochs": 1},
    "cluster": {"number_of_clusters": 8, "epochs": 1},
    "qat": {"epochs": 1},
    "requirements": {"max_int8_accuracy_drop_pp": 30.0},  # loose: blesses
    "npu": {"targets": ["ethos-u55-128", "ethos-u65-256"]},
}
# The PCQAT path alone (and its PTQ reference), for the Beam runner.
PCQAT_CONFIG = {**TREE_CONFIG, "name": "pcqat-test", "paths": ["prune_cluster_pcqat"],
                "npu": {"targets": ["ethos-u55-128"]}}


def run_tree(root, config, runner="local"):
    """Build the tree pipeline of `config` under `root` and run it; returns the SQLite MLMD path."""
    from collabopt import runners
    from collabopt.pipelines import tree
    pipeline_root, mlmd = runners.paths(root)
    runners.run(tree.create_pipeline(config, pipeline_root, mlmd), runner)
    return mlmd


def by_node(mlmd):
    """(store, {node id: execution}) of the newest run."""
    store = results.connect(mlmd)
    return store, {e["node"]: e for e in results.executions(store)}


def node_of(store, execution_id):
    return next(c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution_id)
                if store.get_context_types_by_id([c.type_id])[0].name == "node")


def lineage(store, artifact_id):
    """Node names from the artifact back to the first producer, following model INPUT events."""
    chain = []
    while True:
        producers = [e for e in store.get_events_by_artifact_ids([artifact_id])
                     if e.type == metadata_store_pb2.Event.OUTPUT]
        if not producers:
            return chain
        ex_id = producers[0].execution_id
        chain.append(node_of(store, ex_id))
        inputs = [e for e in store.get_events_by_execution_ids([ex_id])
                  if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key in ("model", "tflite_model")]
        if not inputs:
            return chain
        artifact_id = inputs[0].artifact_id


def artifact(cls, uri, **attrs):
    """A hand-built TFX artifact at `uri` (as TFX's own executor tests build them)."""
    a = cls()
    a.uri = str(uri)
    for k, v in attrs.items():
        setattr(a, k, v)
    return a


def examples_artifact(uri, splits=("train", "eval")):
    from tfx.types import artifact_utils, standard_artifacts
    return artifact(standard_artifacts.Examples, uri, split_names=artifact_utils.encode_split_names(list(splits)))


def save_model_dir(path, model):
    """A tf_keras SavedModel at `path`; returns the path."""
    path = str(path)
    model.save(path, save_format="tf")
    return path


def dense_model(shape=(28, 28, 1), classes=10):
    from collabopt.core.tfenv import keras
    inp = keras.Input(shape)
    return keras.Model(inp, keras.layers.Dense(classes)(keras.layers.Flatten()(inp)))
