"""Retraining semantics: a blessed leaf is pushed; a later run blesses (and pushes) a leaf only if it
is not worse than the one deployed (INT8 accuracy, gzip bytes, NPU time)."""
import json
import os

import pytest

from collabopt.mlmd import results
from collabopt.core import artifact_files, deploy

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from collabopt.tests.helpers import TREE_CONFIG, by_node, run_tree

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


@component
def BlessModel(model: InputArtifact[standard_artifacts.Model],  # noqa: N802 - a TFX component
               blessing: OutputArtifact[standard_artifacts.ModelBlessing]):
    """What TFX's Evaluator writes for a model it blesses."""
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_int_custom_property("current_model_id", model.id)


@pytest.fixture(scope="module")
def retrain_config(local_run, tmp_path_factory):
    _, nodes = by_node(local_run)
    return {**TREE_CONFIG, "name": "retrain", "paths": ["ptq"],
            "baseline": {"model_uri": nodes["BaselineTrainer"]["outputs"]["model"][0].uri},
            "examples": {"uri": nodes["FashionMnistExampleGen"]["outputs"]["examples"][0].uri},
            "requirements": {}, "npu": {"targets": ["ethos-u55-128"]},
            "push": {"destination": str(tmp_path_factory.mktemp("deployed"))}}


def test_push_then_refuse_a_worse_leaf(retrain_config, tmp_path):
    dest = retrain_config["push"]["destination"]
    first = run_tree(tmp_path / "first", retrain_config)
    _, nodes = by_node(first)
    pushed = results.props(nodes["Push_ptq"]["outputs"]["pushed_model"][0])
    assert nodes["Push_ptq"]["state"] == "COMPLETE" and pushed["pushed"] == 1
    version = pushed["pushed_version"]
    assert pushed["pushed_destination"] == os.path.join(dest, "ptq", version)
    assert sorted(os.listdir(os.path.join(dest, "ptq"))) == sorted([version, deploy.LATEST])
    assert deploy.deployed_folder(dest, "ptq") == pushed["pushed_destination"]
    deployed = deploy.last_pushed(dest, "ptq")
    leaf = results.props(nodes["Evaluate_ptq"]["outputs"]["evaluation"][0])
    # MLMD's SQLite store keeps 6 significant digits of a float; leaf.json keeps them all.
    assert deployed["version"] == version and deployed["int8_accuracy"] == pytest.approx(leaf["int8_accuracy"], rel=1e-5)
    assert os.path.isfile(os.path.join(dest, "ptq", version, "model.tflite"))
    assert os.path.isfile(os.path.join(dest, "ptq", version, "npu", "ethos-u55-128", "model_vela.tflite"))

    # The deployed leaf is now (say, after a better model was pushed) smaller and more accurate.
    latest_json = os.path.join(dest, "ptq", version, "leaf.json")
    better = {**deployed, "int8_accuracy": deployed["int8_accuracy"] + 0.01, "int8_metric": deployed["int8_metric"] + 0.01,
              "gzip_bytes": deployed["gzip_bytes"] - 1}
    with open(latest_json, "w") as f:
        json.dump(better, f)
    second = run_tree(tmp_path / "second", retrain_config)
    _, nodes = by_node(second)
    reasons = json.loads(results.props(nodes["Evaluate_ptq"]["outputs"]["evaluation"][0])["reasons"])
    assert reasons == [
        f"worse than deployed version {version}: INT8 accuracy {leaf['int8_accuracy']:.2%} < "
        f"{better['int8_accuracy']:.2%}",
        f"worse than deployed version {version}: gzip size {leaf['gzip_bytes']:,} B > {better['gzip_bytes']:,} B"]
    assert "Push_ptq" not in nodes  # skipped: not blessed
    assert sorted(os.listdir(os.path.join(dest, "ptq"))) == sorted([version, deploy.LATEST])
    with open(latest_json) as f:
        assert json.load(f) == better  # the deployed leaf is untouched


def test_resolvers_pick_the_latest_examples_and_the_latest_blessed_baseline(local_run, tmp_path):
    """As a scheduled run does: the examples and the baseline are resolved from MLMD (what a TFX
    ExampleGen / Trainer / Evaluator wrote), not fixed when the pipeline was compiled."""
    from tfx.dsl.components.common import importer
    from tfx.orchestration import metadata, pipeline

    from collabopt import runners
    from collabopt.core.tfenv import keras

    _, nodes = by_node(local_run)
    baseline_uri = nodes["BaselineTrainer"]["outputs"]["model"][0].uri
    examples_uri = nodes["FashionMnistExampleGen"]["outputs"]["examples"][0].uri
    unblessed_uri = str(tmp_path / "unblessed")  # a newer Model nobody blessed
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(unblessed_uri)
    root, mlmd = runners.paths(tmp_path / "run")
    name = "scheduled"

    def imp(uri, kind, node_id, **kw):
        return importer.Importer(source_uri=uri, artifact_type=kind, **kw).with_id(node_id)

    good = imp(baseline_uri, standard_artifacts.Model, "TrainedModel")
    examples = imp(examples_uri, standard_artifacts.Examples, "NewExamples", properties={"split_names": '["train", "eval"]'})
    upstream = pipeline.Pipeline(
        pipeline_name=name, pipeline_root=root,
        components=[good, BlessModel(model=good.outputs["result"]), examples,
                    imp(unblessed_uri, standard_artifacts.Model, "UnblessedModel")],
        metadata_connection_config=metadata.sqlite_metadata_connection_config(mlmd))
    runners.run(upstream)
    store, up = by_node(mlmd)
    blessed_id = up["TrainedModel"]["outputs"]["result"][0].id
    assert up["UnblessedModel"]["outputs"]["result"][0].id > blessed_id

    config = {**TREE_CONFIG, "name": name, "paths": ["ptq"], "requirements": {},
              "examples": {"resolve": "latest"}, "baseline": {"resolve": "latest_blessed"},
              "npu": {"targets": ["ethos-u55-128"]}}
    from collabopt.pipelines import tree
    runners.run(tree.create_pipeline(config, root, mlmd))
    store, nodes = by_node(mlmd)
    assert "BaselineTrainer" not in nodes and "FashionMnistExampleGen" not in nodes
    conv = nodes["Convert_ptq"]
    inputs = {e.path.steps[0].key: e.artifact_id for e in store.get_events_by_execution_ids([conv["id"]])
              if e.type == e.INPUT}
    assert inputs["model"] == blessed_id  # the blessed model, not the newer unblessed one
    assert inputs["examples"] == up["NewExamples"]["outputs"]["result"][0].id
    assert conv["state"] == "COMPLETE"


def test_latest_pushed_model_is_the_newest_version(local_run, tmp_path):
    """KFP runs no resolvers: scheduled runs take the baseline from a TFX Pusher's destination."""
    import shutil
    from collabopt import runners
    from collabopt.pipelines import tree
    _, nodes = by_node(local_run)
    trained = nodes["BaselineTrainer"]["outputs"]["model"][0].uri
    serving = tmp_path / "serving"
    shutil.copytree(os.path.join(trained, artifact_files.MODEL_DIR), serving / "1700000000")
    shutil.copytree(os.path.join(trained, artifact_files.MODEL_DIR), serving / "1800000000")
    (serving / "1900000000-partial").mkdir()  # not a version
    config = {**TREE_CONFIG, "name": "pushed", "paths": ["ptq"], "requirements": {},
              "baseline": {"pushed_models": str(serving)}, "npu": {"targets": ["ethos-u55-128"]},
              "examples": {"uri": nodes["FashionMnistExampleGen"]["outputs"]["examples"][0].uri}}
    mlmd = run_tree(tmp_path / "run", config)
    _, run = by_node(mlmd)
    model = run["LatestPushedModel"]["outputs"]["model"][0]
    props = results.props(model)
    assert (props["source_uri"], props["version"]) == (str(serving / "1800000000"), 1800000000)
    assert os.path.isfile(os.path.join(model.uri, artifact_files.MODEL_DIR, "saved_model.pb"))
    assert run["Evaluate_ptq"]["state"] == "COMPLETE"

    empty = tmp_path / "empty"
    empty.mkdir()
    root, mlmd = runners.paths(tmp_path / "bad")
    with pytest.raises(Exception, match="no pushed model in .*empty.*: expected <version>/saved_model.pb"):
        runners.run(tree.create_pipeline({**config, "baseline": {"pushed_models": str(empty)}}, root, mlmd))
    _, bad = by_node(mlmd)
    assert bad["LatestPushedModel"]["state"] == "FAILED"
    assert not [a for a in bad["LatestPushedModel"]["outputs"].get("model", []) if a.state == a.LIVE]


def test_a_failure_caused_by_the_deployed_tree_is_not_cached(tmp_path, capsys):
    """A LATEST naming a missing version fails the run (the leaf cannot be judged against what is
    deployed): the LeafEvaluator's execution is FAILED, not a cached result. Once LATEST is fixed as the
    message says, the same command runs the evaluation again and succeeds, without --no-cache."""
    import yaml

    from collabopt.cli import main
    from collabopt.tests.helpers import fashion_mnist_examples, tiny_model

    dest, root = tmp_path / "deployed", str(tmp_path / "root")
    examples = fashion_mnist_examples(tmp_path / "examples", 300, 100)

    def run(name, model):
        config = {"name": "deployed-state", "paths": ["ptq"], "examples": {"uri": examples},
                  "baseline": {"model_uri": model}, "data": {"train_limit": 300, "eval_limit": 100},
                  "requirements": {}, "npu": {"targets": ["ethos-u55-128"]}, "push": {"destination": str(dest)}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        try:
            code = main(["run", str(tmp_path / f"{name}.yaml"), "--root", root]) or 0
        except SystemExit as e:
            code = e.code
        _, err = capsys.readouterr()
        return code, err, by_node(os.path.join(root, "metadata.sqlite"))[1]

    code, err, _ = run("first", tiny_model(tmp_path / "first"))
    assert code == 0, err
    deployed = deploy.deployed_version(dest, "ptq")
    pointer = dest / "ptq" / deploy.LATEST
    pointer.write_text("999\n")  # the user's mistake: a version that is not there
    newer = tiny_model(tmp_path / "newer", width=8)  # a new baseline: its leaf is judged again
    code, err, nodes = run("newer", newer)
    assert code == 1 and err.strip() == (
        f"collabopt run: node Evaluate_ptq failed: {pointer} names version '999', but {dest / 'ptq' / '999'} holds "
        "no leaf.json: the deployed version was removed; write an existing version's name there"), err
    assert nodes["Evaluate_ptq"]["state"] == "FAILED" and "Push_ptq" not in nodes
    pointer.write_text(deployed + "\n")  # fixed as told
    code, err, nodes = run("newer", newer)
    assert code == 0, err
    assert nodes["Evaluate_ptq"]["state"] == "COMPLETE" and nodes["Convert_ptq"]["state"] == "CACHED"
    leaf = artifact_files.read_leaf(nodes["Evaluate_ptq"]["outputs"]["evaluation"][0].uri)
    assert leaf["previous_version"] == deployed  # judged against what is deployed now
