"""Bad input: a specific error, a FAILED execution in MLMD, and no published output artifact."""

import pytest
from ml_metadata.proto import metadata_store_pb2

from collabopt.mlmd import results
from collabopt import runners
from collabopt.components import NPUCompiler, Pruner, SparseClusterer, TFLiteModel, keys
from collabopt.core.tfenv import keras, tf
from collabopt.tests.helpers import dense_model, save_model_dir, subclassed_model

from tfx.dsl.components.common import importer
from tfx.orchestration import metadata, pipeline
from tfx.types import standard_artifacts

SMALL = {"train_limit": 200, "eval_limit": 100, "epochs": 1}


def _run_failing(tmp_path, make_component, model_uri=None, examples_uri=None, tflite_uri=None):
    """Run importers + one component; returns (error text, {node: state}, output artifacts' states)."""
    comps, kwargs = [], {}
    if examples_uri:
        comps.append(importer.Importer(source_uri=examples_uri, artifact_type=standard_artifacts.Examples,
                                       properties={"split_names": '["train", "eval"]'}).with_id("ImportExamples"))
        kwargs["examples"] = comps[-1].outputs["result"]
    if model_uri:
        comps.append(importer.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model)
                     .with_id("ImportModel"))
        kwargs["model"] = comps[-1].outputs["result"]
    if tflite_uri:
        comps.append(importer.Importer(source_uri=tflite_uri, artifact_type=TFLiteModel).with_id("ImportTFLite"))
        kwargs["tflite_model"] = comps[-1].outputs["result"]
    comp = make_component(**kwargs)
    root, mlmd = runners.paths(tmp_path / "run")
    p = pipeline.Pipeline(pipeline_name="bad-input", pipeline_root=root, components=[*comps, comp],
                          metadata_connection_config=metadata.sqlite_metadata_connection_config(mlmd))
    with pytest.raises(Exception) as err:
        runners.run(p, "local")
    store = results.connect(mlmd)
    execs = {e["node"]: e for e in results.executions(store)}
    failed = execs[comp.id]
    live = [a for arts in failed["outputs"].values() for a in arts
            if a.state == metadata_store_pb2.Artifact.LIVE]
    return str(err.value), {n: e["state"] for n, e in execs.items()}, live, comp.id


def _assert_failed(result, *messages):
    text, states, live, node = result
    for m in messages:
        assert m in text, f"{m!r} not in error: {text[:2000]}"
    assert states[node] == "FAILED"
    assert live == [], "a failed execution published an output artifact"


def _pruner(**kw):
    return Pruner(**kw, **SMALL)


def test_model_path_missing(tmp_path, examples_uri):
    missing = str(tmp_path / "no_such_model")
    _assert_failed(_run_failing(tmp_path, _pruner, missing, examples_uri),
                   f"model path {missing!r} does not exist")


def test_model_path_not_a_saved_model(tmp_path, examples_uri):
    d = tmp_path / "not_a_model"
    d.mkdir()
    (d / "weights.txt").write_text("nothing here")
    _assert_failed(_run_failing(tmp_path, _pruner, str(d), examples_uri),
                   "is not a SavedModel: no saved_model.pb in it or in its Format-Serving/ folder")


def test_subclassed_model(tmp_path, examples_uri):
    _assert_failed(_run_failing(tmp_path, _pruner, save_model_dir(tmp_path / 'model', subclassed_model()), examples_uri),
                   "only Sequential/Functional tf_keras models are supported; got a subclassed model")


class TimesTwo(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_custom_layer_is_named(tmp_path, examples_uri):
    inp = keras.Input((28, 28, 1))
    x = TimesTwo(name="times_two")(inp)
    m = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    _assert_failed(_run_failing(tmp_path, _pruner, save_model_dir(tmp_path / 'model', m), examples_uri),
                   "layer 'times_two' is a custom layer")


def test_examples_without_label_key(tmp_path, examples_uri):
    make = lambda **kw: Pruner(**kw, label_key="target", **SMALL)  # noqa: E731
    _assert_failed(_run_failing(tmp_path, make, save_model_dir(tmp_path / 'model', dense_model()), examples_uri),
                   "Examples split 'train' has no feature 'target'; available features: image, label")


def test_examples_without_feature_key(tmp_path, examples_uri):
    make = lambda **kw: SparseClusterer(**kw, feature_key="pixels", **SMALL)  # noqa: E731
    _assert_failed(_run_failing(tmp_path, make, save_model_dir(tmp_path / 'model', dense_model()), examples_uri),
                   "Examples split 'train' has no feature 'pixels'; available features: image, label")


def test_float_tflite_rejected_by_npu_compiler(tmp_path):
    d = tmp_path / "float_tflite"
    d.mkdir()
    (d / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(dense_model()).convert())
    # The path's own result (NotInt8Error is a PathError): that path fails, the run goes on.
    imp = importer.Importer(source_uri=str(d), artifact_type=TFLiteModel).with_id("ImportTFLite")
    comp = NPUCompiler(tflite_model=imp.outputs["result"])
    root, mlmd = runners.paths(tmp_path / "run")
    runners.run(pipeline.Pipeline(pipeline_name="bad-input", pipeline_root=root,
                                  components=[imp, comp],
                                  metadata_connection_config=metadata.sqlite_metadata_connection_config(mlmd)), "local")
    execs = {e["node"]: e for e in results.executions(results.connect(mlmd))}
    assert execs[comp.id]["state"] == "COMPLETE"
    [npu] = [a for arts in execs[comp.id]["outputs"].values() for a in arts]
    error = results.props(npu)[keys.ERROR]
    assert results.props(npu)[keys.FAILED] == 1 and error.startswith(f"{comp.id}: ")
    assert "NPUCompiler needs a fully INT8 TFLite model" in error and "float32 tensors" in error


def test_unknown_accelerator_config(examples_uri):
    ch = importer.Importer(source_uri=examples_uri, artifact_type=TFLiteModel).outputs["result"]
    with pytest.raises(ValueError, match=r"^npu.targets.0: 'ethos-u99-1' is not one of \['ethos-u55-32', 'ethos-u55-64'"):
        NPUCompiler(tflite_model=ch, targets="ethos-u99-1")
