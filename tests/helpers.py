"""What the test modules share (the suite's and each component's own): small configs, pipeline runs,
MLMD look-ups, hand-built artifacts and tiny models. Fixtures live in tests/conftest.py."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from collabopt.mlmd import results  # noqa: E402

# Small but real: enough for the baseline to learn (~70%; on 1,200 images it stays near chance) and for
# every stage to run.
TREE_CONFIG = {
    "name": "tree-test",
    "paths": "all",
    "data": {"train_limit": 2000, "eval_limit": 300},
    "baseline": {"epochs": 3},
    "prune": {"target_sparsity": 0.5, "epochs": 1},
    "cluster": {"number_of_clusters": 8, "epochs": 1},
    "qat": {"epochs": 1},
    "requirements": {"max_int8_accuracy_drop_pp": 30.0},  # loose: blesses
    "npu": {"targets": ["ethos-u55-128", "ethos-u65-256"]},
}


def prop(artifact, name):
    """An MLMD custom property's value, failing when it was not recorded: TFX's typed getters answer 0,
    0.0 or "" for a missing property, which an assert would take for a value."""
    assert artifact.has_custom_property(name), f"{name!r} is not recorded on {artifact.type_name} {artifact.uri}"
    return artifact.get_custom_property(name)


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


def failed_artifact(cls, uri, error):
    """A hand-built artifact of a path that failed upstream (common.PathStage marks them so)."""
    from collabopt.components import keys
    a = artifact(cls, uri)
    a.set_int_custom_property(keys.FAILED, 1)
    a.set_string_custom_property(keys.ERROR, error)
    return a


def failure_of(art):
    """(failed, error) custom properties of an output artifact."""
    from collabopt.components import keys
    return prop(art, keys.FAILED), prop(art, keys.ERROR)


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
    inp = keras.Input(shape, name="pixels")  # named: Keras numbers unnamed inputs per process
    return keras.Model(inp, keras.layers.Dense(classes)(keras.layers.Flatten()(inp)))


def subclassed_model(shape=(28, 28, 1), classes=10):
    """A built subclassed tf_keras model, class `Subclassed` (collabopt takes Sequential/Functional ones)."""
    import numpy as np

    from collabopt.core.tfenv import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat, self.dense = keras.layers.Flatten(), keras.layers.Dense(classes)

        def call(self, x):
            return self.dense(self.flat(x))
    model = Subclassed()
    model(np.zeros((1, *shape), np.float32))
    return model


def int8_kernel_layers(tflite_path, left_out=()):
    """The flatbuffer's Conv2D/Dense kernels (TFMOT neither prunes nor clusters depthwise ones), except
    those of layers a technique left out; and whether every kernel is int8."""
    from collabopt.core.tflite import flatbuffer
    with open(tflite_path, "rb") as f:
        layers = flatbuffer.layer_stats(f.read())
    return [l for l in layers if l["op"] != "DEPTHWISE_CONV_2D" and l["layer"] not in left_out], \
        all(l["dtype"] == "int8" for l in layers)


def int8_io(tflite_path):
    """Whether every input and output of the flatbuffer is int8."""
    import numpy as np

    from collabopt.core.tflite import flatbuffer
    it = flatbuffer.interpreter(model_path=tflite_path)
    return all(d["dtype"] == np.int8 for d in it.get_input_details() + it.get_output_details())


# ---------------------------------------------------------------- components' own tests
# components/<name>/component_test.py and executor_test.py (fixtures: components/conftest.py).

TINY_DATA = {"train_limit": 200, "eval_limit": 100}  # of the 300/100 examples the fixture writes
TINY_FIT = {"epochs": 1, "batch_size": 64}
IN_MEMORY = ["--direct_running_mode=in_memory"]  # a Beam executor's pipeline: in-process DirectRunner


def channel(cls):
    """A channel holding one empty artifact of `cls` (as TFX's component tests build inputs)."""
    from tfx.types import channel_utils
    return channel_utils.as_channel([cls()])


def model_stage_channels():
    """The `model` and `examples` inputs every model stage takes."""
    from tfx.types import standard_artifacts

    from collabopt.components import keys
    return {keys.MODEL_KEY: channel(standard_artifacts.Model), keys.EXAMPLES_KEY: channel(standard_artifacts.Examples)}


def output_types(component):
    """{output key: artifact type name} of a constructed component."""
    return {k: c.type_name for k, c in component.outputs.items()}


def config_error(make, **params):
    """The message of the ConfigError that `make(**params)` raises (fails if it raises none)."""
    import pytest

    from collabopt.schemas import ConfigError
    with pytest.raises(ConfigError) as e:
        make(**params)
    return str(e.value)


def tiny_model(uri, width=16, blocks=1):
    """A user's model, from outside collabopt: a DS-CNN SavedModel under `uri`/Format-Serving (as a TFX
    Trainer writes it), with no kernels.npz or stats.json next to it. Returns `uri`."""
    from collabopt.core.model import baseline, keras_io
    keras_io.save_model(baseline.ds_cnn(width=width, blocks=blocks), os.path.join(str(uri), keras_io.SERVING_DIR))
    return str(uri)


def data_spec(examples_uri, **kwargs):
    from collabopt.core import stages
    return stages.DataSpec(examples_uri=str(examples_uri), **{**TINY_DATA, **kwargs})


def run_executor(executor, component, inputs, out_root, **exec_overrides):
    """`executor.Do` as TFX calls it for `component`: the hand-built input artifacts `inputs` ({key:
    artifact}), one fresh output artifact per output channel of the component (at out_root/<key>),
    and the component's own encoded exec_properties (`exec_overrides` replace some, as an edited
    spec or a runtime parameter would). Returns {output key: artifact}."""
    outputs = {k: artifact(c.type, os.path.join(str(out_root), k)) for k, c in component.outputs.items()}
    executor.Do({k: [a] for k, a in inputs.items()}, {k: [a] for k, a in outputs.items()},
                {**component.exec_properties, **exec_overrides})
    return outputs


def beam_executor(executor_cls, made=None):
    """A Beam executor with a TFX context whose pipelines are in-memory DirectRunner ones (given as
    make_beam_pipeline_fn, so a test sees each one); each pipeline it makes is appended to `made`."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.dsl.components.base import base_beam_executor

    def make():
        p = beam.Pipeline(options=PipelineOptions(IN_MEMORY))
        if made is not None:
            made.append(p)
        return p
    return executor_cls(base_beam_executor.BaseBeamExecutor.Context(make_beam_pipeline_fn=make))


def kernel_history(uri):
    """(layer, {stage: kernel}) of an artifact's kernels.npz (the report's density figure data)."""
    import numpy as np

    from collabopt.core.artifact_files import KERNELS_FILE
    with np.load(os.path.join(str(uri), KERNELS_FILE)) as z:
        return str(z["__layer__"]), {k: z[k] for k in z.files if k != "__layer__"}


def saved_kernel(uri, layer):
    """The kernel of `layer` in the SavedModel of a Model artifact (or plain SavedModel) at `uri`."""
    from collabopt.core.model import keras_io
    return keras_io.load_model(uri).get_layer(layer).get_weights()[0]


def read_json(path):
    import json
    with open(path) as f:
        return json.load(f)


def encoded_data(**overrides):
    """The data parameters as a component's spec holds them (lists as JSON strings)."""
    return {"feature_key": "image", "label_key": "label", "feature_shape": "[28, 28, 1]", "train_split": "train",
            "eval_split": "eval", "train_limit": 0, "eval_limit": 0, "scale": "auto", **overrides}


def encoded_training(**overrides):
    """The training parameters as a component's spec holds them (defaults; None as "")."""
    return {"target": "label", "module_file": "", "loss": "auto", "metrics": "", "eval_metric": "accuracy", "top_k": 5,
            **overrides}


def sparse_model(uri, model_uri, sparsity):
    """A pruned model built by hand: the model at `model_uri` with the smallest `sparsity` of every
    Conv2D/Dense kernel (not the depthwise ones, as TFMOT) set to zero, saved under `uri`/Format-Serving
    with the stats.json a Pruner writes (promises target_sparsity). Returns `uri`."""
    import numpy as np

    from collabopt.core.model import keras_io
    from collabopt.core.artifact_files import STATS_FILE, write_json
    model = keras_io.load_model(model_uri)
    for layer in model.layers:
        if type(layer) in (keras_io.keras.layers.Conv2D, keras_io.keras.layers.Dense):
            w, *rest = layer.get_weights()
            w = np.where(np.abs(w) < np.quantile(np.abs(w), sparsity), 0.0, w).astype(w.dtype)
            layer.set_weights([w, *rest])
    keras_io.save_model(model, os.path.join(str(uri), keras_io.SERVING_DIR))
    write_json(os.path.join(str(uri), STATS_FILE), {"promises": {"target_sparsity": sparsity}})
    return str(uri)


def model_stage_inputs(model_uri, examples_uri):
    """Hand-built `model` and `examples` input artifacts of a model stage."""
    from tfx.types import standard_artifacts

    from collabopt.components import keys
    return {keys.MODEL_KEY: artifact(standard_artifacts.Model, model_uri),
            keys.EXAMPLES_KEY: examples_artifact(examples_uri)}


def run_model_stage(executor, component_cls, model_uri, examples_uri, out_root, params=None, **exec_overrides):
    """run_executor for a model stage (Pruner, SparseClusterer, PreservingQAT) built with `params` on tiny
    data for one epoch, on hand-built model/examples artifacts; returns its output Model artifact."""
    from collabopt.components import keys
    component = component_cls(**model_stage_channels(), **{**TINY_DATA, **TINY_FIT, **(params or {})})
    outputs = run_executor(executor, component, model_stage_inputs(model_uri, examples_uri), out_root,
                           **exec_overrides)
    return outputs[keys.MODEL_OUTPUT[component_cls.__name__]]


def fashion_mnist_examples(uri, train_limit, eval_limit):
    """An Examples artifact folder of real Fashion-MNIST images (class-balanced subsets); returns `uri`."""
    from collabopt.core.data import examples_io
    examples_io.write_examples(str(uri), examples_io.load_fashion_mnist(train_limit=train_limit, eval_limit=eval_limit))
    return str(uri)


def pcqat_stages(model_dir, data_spec, out, representative_samples=32, training=None):
    """prune (50%) -> sparsity-preserving cluster (8) -> PCQAT -> INT8 -> Vela (ethos-u55-128) through
    core.stages, one epoch each, as the pipeline's executors call them, from the SavedModel at
    `model_dir` (`training`: a TrainingSpec, e.g. an autoencoder's MSE); returns (QAT stats, INT8
    stats, .tflite path, Vela numbers)."""
    from collabopt.core import artifact_files, stages
    out = str(out)
    fit = stages.FitSpec(epochs=1, batch_size=64, learning_rate=1e-4)
    t = {} if training is None else {"training": training}
    stages.prune(str(model_dir), data_spec, os.path.join(out, "p"), target_sparsity=0.5, fit=fit, **t)
    stages.cluster(os.path.join(out, "p"), data_spec, os.path.join(out, "c"), number_of_clusters=8, fit=fit, **t)
    qat = stages.preserving_qat(os.path.join(out, "c"), data_spec, os.path.join(out, "q"), fit=fit, **t)
    stats = stages.to_tflite(os.path.join(out, "q"), data_spec, os.path.join(out, "t"),
                             representative_samples=representative_samples, **t)
    tflite = os.path.join(out, "t", artifact_files.TFLITE_FILE)
    npu = stages.compile_npu(tflite, os.path.join(out, "npu"))["ethos-u55-128"]
    return qat, stats, tflite, npu


def tflm_child(function, *args):
    """collabopt.core.firmware.tflm.<function>(*args) in a fresh Python without TensorFlow (arguments and
    result pickled): its arena probes fork, which a test worker running TensorFlow's threads must not."""
    import pickle
    import subprocess
    import sys
    import tempfile

    code = ("import pickle, sys; from collabopt.core.firmware import tflm; "
            "a = pickle.load(open(sys.argv[2], 'rb')); pickle.dump(getattr(tflm, sys.argv[1])(*a), open(sys.argv[3], 'wb'))")
    with tempfile.TemporaryDirectory(prefix="collabopt-tflm-test-") as d:
        inp, out = os.path.join(d, "args.pkl"), os.path.join(d, "result.pkl")
        with open(inp, "wb") as f:
            pickle.dump(args, f)
        done = subprocess.run([sys.executable, "-c", code, function, inp, out], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        with open(out, "rb") as f:
            return pickle.load(f)
