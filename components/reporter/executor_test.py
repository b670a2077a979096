"""Reporter executor with hand-built LeafEvaluations: report.html (leaf table, tree, Pareto front,
the density figure of the deepest kernel trace), leaves.json, the published copy and MLMD counts."""
import html
import os
import shutil

import numpy as np
from tfx.dsl.components.base import base_executor

from collabopt.components import LeafEvaluation, Reporter, keys
from collabopt.components.reporter.executor import Executor
from collabopt.core.artifact_files import write_json
from collabopt.tests.helpers import prop, artifact, channel, kernel_history, read_json, run_executor

REASON = "gzip size 1 B > max 0 B"


def _rejected_smaller_leaf(uri, evaluation_uri):
    """The ptq evaluation copied and edited into an unblessed prune_ptq leaf, smaller than the ptq one,
    with a longer kernel trace (baseline -> pruned -> int8)."""
    shutil.copytree(evaluation_uri, uri)
    leaf = read_json(os.path.join(uri, "leaf.json"))
    write_json(os.path.join(uri, "leaf.json"), {**leaf, "path": "prune_ptq", "blessed": False, "reasons": [REASON],
                                                "gzip_bytes": leaf["gzip_bytes"] - 100})
    layer, history = kernel_history(evaluation_uri)
    pruned = np.where(np.abs(history["baseline"]) < np.median(np.abs(history["baseline"])), 0, history["baseline"])
    np.savez_compressed(os.path.join(uri, "kernels.npz"), __layer__=np.array(layer),
                        baseline=history["baseline"], pruned=pruned, int8=history["int8"])
    return uri


def test_report_of_two_leaves(tmp_path, evaluation_uri):
    rejected = _rejected_smaller_leaf(str(tmp_path / "prune_ptq"), evaluation_uri)
    inputs = {"ptq": artifact(LeafEvaluation, evaluation_uri), "prune_ptq": artifact(LeafEvaluation, rejected)}
    publish = tmp_path / "publish"
    reporter = Reporter({p: channel(LeafEvaluation) for p in inputs}, title="nightly <run>", publish_dir=str(publish))
    executor = Executor(base_executor.BaseExecutor.Context(pipeline_run_id="run-42"))
    report = run_executor(executor, reporter, inputs, tmp_path)[keys.REPORT_KEY]

    # The smallest blessed leaf: the smaller prune_ptq leaf is not blessed.
    assert prop(report, "leaves") == 2
    assert prop(report, "blessed_leaves") == 1
    assert prop(report, "smallest_blessed") == "ptq"
    leaves = read_json(os.path.join(report.uri, "leaves.json"))
    assert [l["path"] for l in leaves] == ["ptq", "prune_ptq"] and not any("layers" in l for l in leaves)
    view = leaves[0]["npu"]["ethos-u55-128"][keys.PER_LAYER]  # where the NPU time goes, per layer
    assert sum(v["cycles"] for v in view) == leaves[0]["npu"]["ethos-u55-128"]["npu_cycles"]

    page = open(os.path.join(report.uri, "report.html")).read()
    assert open(publish / "report.html").read() == page  # published next to the pipeline root
    assert "<title>nightly &lt;run&gt;</title>" in page and "<b>pipeline run</b>: run-42" in page
    assert page.count('<tr class="blessed">') == 1 and page.count('<tr class="rejected">') == 1
    assert f'<div class="reason">{html.escape(REASON)}</div>' in page
    assert page.count('<img alt="" src="data:image/png;base64,') == 3  # tree, Pareto front, density
    assert "Where the NPU time goes, per layer" in page
    total = leaves[0]["npu"]["ethos-u55-128"]["npu_cycles"]
    assert page.count(f"on ethos-u55-128: {total:,} cycles</h3>") == 2  # a table per leaf
    pw = next(v for v in view if v["layer"] == "pw_1")
    assert f"<td class=l>pw_1</td><td>{pw['cycles']:,}</td>" in page
    # The density figure follows the deepest trace: prune_ptq's kernel through its stages.
    assert ("Kernel of layer <b>pw_1</b> after each stage of <b>prune -&gt; PTQ</b>: baseline, pruned, int8"
            in page)


def test_report_without_publish_dir(tmp_path, evaluation_uri):
    reporter = Reporter({"ptq": channel(LeafEvaluation)})
    report = run_executor(Executor(), reporter, {"ptq": artifact(LeafEvaluation, evaluation_uri)},
                          tmp_path)[keys.REPORT_KEY]
    assert sorted(os.listdir(report.uri)) == ["leaves.json", "report.html"]
    assert prop(report, "smallest_blessed") == "ptq"
    assert "<b>pipeline run</b>: ?" in open(os.path.join(report.uri, "report.html")).read()
