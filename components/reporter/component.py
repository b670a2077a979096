"""Reporter: one self-contained HTML report per run from the leaves' evaluations."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts, common, keys
from collabopt.components.reporter import executor
from collabopt.core import tree_paths


class ReporterSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters("report", ("title",)),
                  "publish_dir": ExecutionParameter(type=str)}  # also write report.html here ("" = no)
    # One optional input per deployment-tree path (fixed names compile everywhere, KFP included).
    INPUTS = {p: ChannelParameter(type=artifacts.LeafEvaluation, optional=True) for p in tree_paths.PATHS}
    OUTPUTS = {keys.REPORT_KEY: ChannelParameter(type=artifacts.OptimizationReport)}


class Reporter(base_component.BaseComponent):
    """Outputs `report` (collabopt.OptimizationReport: report.html with the leaf table, the tree, the
    Pareto fronts and the kernel density plots; leaves.json)."""
    SPEC_CLASS = ReporterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, evaluations: dict, title="collabopt optimization report", publish_dir=""):
        unknown = sorted(set(evaluations) - set(tree_paths.PATHS))
        if unknown or not evaluations:
            raise ValueError(f"evaluations must map deployment-tree paths ({', '.join(tree_paths.PATHS)}) to "
                             f"LeafEvaluation channels; got {sorted(evaluations) or 'none'}")
        super().__init__(spec=ReporterSpec(
            **common.encode("report", title=title), publish_dir=publish_dir, report=types.Channel(type=artifacts.OptimizationReport),
            **evaluations))
