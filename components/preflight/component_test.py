"""Preflight component: construction, no outputs, encoded exec_properties; the tree runs it before
every node that reads the baseline, and only when some path fine-tunes."""
from collabopt.components import Preflight
from collabopt.components.preflight import executor
from collabopt.pipelines import tree
from collabopt.tests.helpers import encoded_data, encoded_training, model_stage_channels


def test_construct():
    node = Preflight(**model_stage_channels(), train_limit=100)
    assert node.outputs == {}
    assert node.EXECUTOR_SPEC.executor_class is executor.Executor
    assert node.exec_properties == {**encoded_data(train_limit=100), **encoded_training()}


def _downstream(paths, tmp_path):
    pipe = tree.create_pipeline({"name": "t", "paths": paths}, str(tmp_path / "root"))
    pre = [c for c in pipe.components if c.id == "Preflight"]
    return sorted(n.id for n in pre[0].downstream_nodes) if pre else None


def test_the_tree_runs_it_before_every_reader_of_the_baseline(tmp_path):
    assert _downstream("all", tmp_path) == ["Clusterer", "Convert_ptq", "Evaluate_ptq", "Pruner", "QAT"]
    assert _downstream(["prune_ptq"], tmp_path) == ["Convert_ptq", "Evaluate_ptq", "Pruner"]
    assert _downstream(["ptq"], tmp_path) is None  # Convert_ptq is the first node anyway
