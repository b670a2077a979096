"""Reporter component: construction, one optional input per deployment-tree path, encoded
exec_properties, output type, parameter checks."""
import pytest

from collabopt.components import LeafEvaluation, OptimizationReport, Reporter, keys
from collabopt.components.reporter import executor
from collabopt.core import tree_paths
from collabopt.tests.helpers import channel, config_error, output_types


def test_construct():
    evaluations = {"ptq": channel(LeafEvaluation), "prune_cluster_pcqat": channel(LeafEvaluation)}
    reporter = Reporter(evaluations, title="nightly", publish_dir="/reports")
    assert output_types(reporter) == {keys.REPORT_KEY: OptimizationReport.TYPE_NAME}
    assert OptimizationReport.TYPE_NAME == "collabopt.OptimizationReport"
    assert reporter.inputs == evaluations
    assert set(reporter.spec.INPUTS) == set(tree_paths.PATHS)  # fixed names: one per path, all optional
    assert all(p.optional and p.type is LeafEvaluation for p in reporter.spec.INPUTS.values())
    assert reporter.EXECUTOR_SPEC.executor_class is executor.Executor
    assert reporter.exec_properties == {"title": "nightly", "publish_dir": "/reports"}
    assert Reporter({"ptq": channel(LeafEvaluation)}).exec_properties == {
        "title": "collabopt optimization report", "publish_dir": ""}


def test_bad_title_is_a_config_error():
    assert config_error(Reporter, evaluations={"ptq": channel(LeafEvaluation)}, title="") == \
        "report.title: '' should be non-empty"


@pytest.mark.parametrize("paths, got", [([], "none"), (["ptq", "sparse"], "['ptq', 'sparse']")])
def test_evaluations_must_be_tree_paths(paths, got):
    with pytest.raises(ValueError) as e:
        Reporter({p: channel(LeafEvaluation) for p in paths})
    assert str(e.value) == (f"evaluations must map deployment-tree paths ({', '.join(tree_paths.PATHS)}) to "
                            f"LeafEvaluation channels; got {got}")
