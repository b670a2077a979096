"""The whole deployment tree from one config (issue 3): shared prefixes, Beam evaluation, gates,
the report (HTML rendered by headless Chromium) and the JSON the CLI reads back from MLMD."""
import base64
import io
import json
import os
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pytest
from ml_metadata.proto import metadata_store_pb2

from collabopt import cli
from collabopt.mlmd import results
from collabopt.core.tflite import flatbuffer
from collabopt.core import artifact_files, tree_paths
from collabopt.core.data import examples_io
from collabopt.core.evaluation import beam_eval

from collabopt.tests.helpers import TREE_CONFIG, by_node, node_of, run_tree

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

LEAF_FIELDS = ("path", "fp32_accuracy", "int8_accuracy", "tflite_bytes", "gzip_bytes", "saving_pct", "sparsity",
               "max_unique_per_channel", "blessed")
ALL = tree_paths.expand("all")  # the tree's 8 paths (the opt-in thin_ptq is not among them)
NPU_FIELDS = ("cycles", "inference_time_s", "flash_bytes", "sram_bytes", "npu_op_pct")


def _cli_json(capsys, mlmd):
    cli.main(["report", "--mlmd", mlmd, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_all_paths_give_8_leaves_with_every_field(local_run, capsys):
    leaves = _cli_json(capsys, local_run)
    assert sorted(l["path"] for l in leaves) == sorted(ALL)
    for leaf in leaves:
        missing = [k for k in LEAF_FIELDS if leaf.get(k) is None]
        assert not missing, (leaf["path"], missing)
        assert sorted(leaf["npu"]) == sorted(TREE_CONFIG["npu"]["targets"])
        for target, est in leaf["npu"].items():
            assert all(est[k] is not None for k in NPU_FIELDS), (leaf["path"], target, est)
            assert est["cycles"] > 0 and est["npu_op_pct"] == 100.0
        assert 0 < leaf["gzip_bytes"] < leaf["tflite_bytes"]
    by_path = {l["path"]: l for l in leaves}
    # Every technique of a path says what it left out (nothing: TFMOT handles every DS-CNN layer).
    assert by_path["prune_cluster_pcqat"]["excluded_layers"] == {"prune": {}, "cluster": {}, "qat": {}}
    assert by_path["ptq"]["excluded_layers"] == {}
    # What each path promises shows in its flatbuffer: pruned paths are sparse, clustered ones have few values.
    assert all(by_path[p]["sparsity"] > 0.4 for p in ALL if "prune" in tree_paths.PATHS[p])
    assert all(by_path[p]["sparsity"] < 0.1 for p in ("ptq", "qat", "cluster_ptq", "cluster_cqat"))
    assert all(by_path[p]["max_unique_per_channel"] <= 8 for p in ALL if "cluster" in tree_paths.PATHS[p])


def test_shared_prefixes_execute_once(local_run):
    store, nodes = by_node(local_run)
    execs = results.executions(store)
    names = [e["node"] for e in execs]
    assert len(names) == len(set(names))  # no node ran twice
    stage_nodes = {"BaselineTrainer", "Pruner", "Clusterer", "SparseClusterer", "QAT", "PQAT", "CQAT", "PCQAT"}
    assert stage_nodes <= set(names) and all(nodes[n]["state"] == "COMPLETE" for n in stage_nodes)
    # One pruned model feeds its three children; one baseline feeds five.
    consumers = {}
    for node, key in (("Pruner", "pruned_model"), ("BaselineTrainer", "model")):
        art = nodes[node]["outputs"][key][0]
        consumers[node] = sorted({node_of(store, e.execution_id) for e in store.get_events_by_artifact_ids([art.id])
                                  if e.type == metadata_store_pb2.Event.INPUT})
    assert [n for n in consumers["Pruner"] if not n.startswith("Evaluate_")] == [
        "Convert_prune_ptq", "PQAT", "SparseClusterer"]
    assert [n for n in consumers["BaselineTrainer"] if not n.startswith("Evaluate_")] == [
        "Clusterer", "Convert_ptq", "Preflight", "Pruner", "QAT"]


def test_beam_int8_accuracy_equals_single_process(local_run):
    """Each leaf's INT8 accuracy from the Beam evaluator equals the converter's in-process figure
    on the same eval split; the baseline's FP32 accuracy agrees with the trainer's."""
    _, nodes = by_node(local_run)
    for path in ALL:
        beam = results.props(nodes[f"Evaluate_{path}"]["outputs"]["evaluation"][0])
        single = results.props(nodes[f"Convert_{path}"]["outputs"]["tflite_model"][0])
        assert beam["eval_examples"] == TREE_CONFIG["data"]["eval_limit"]
        assert beam["int8_accuracy"] == single["int8_accuracy"], path
    trainer = results.props(nodes["BaselineTrainer"]["outputs"]["model"][0])
    ptq = results.props(nodes["Evaluate_ptq"]["outputs"]["evaluation"][0])
    assert abs(ptq["fp32_accuracy"] - trainer["accuracy"]) <= 1 / TREE_CONFIG["data"]["eval_limit"]


def test_beam_evaluation_on_two_worker_processes(local_run, examples_uri, tmp_path):
    """The same Beam code on the multi-process DirectRunner, over a split in 3 shards."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    _, nodes = by_node(local_run)
    tflite_dir = nodes["Convert_prune_cluster_pcqat"]["outputs"]["tflite_model"][0].uri
    tflite_path = os.path.join(tflite_dir, artifact_files.TFLITE_FILE)
    x, y = examples_io.read_examples(examples_uri, "eval")
    sharded = str(tmp_path / "sharded")
    examples_io.write_examples(sharded, {"eval": (x, y)}, num_shards=3)
    opts = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    got = beam_eval.accuracy(tflite_path, sharded, "eval",
                            make_pipeline=lambda: beam.Pipeline(options=PipelineOptions(opts)))
    with open(tflite_path, "rb") as f:
        expected = flatbuffer.int8_accuracy(f.read(), x, y)
    assert got["examples"] == len(y) == 200
    assert got["int8_accuracy"] == expected and got["keras_accuracy"] is None


def test_loose_requirements_bless(local_run, capsys):
    leaves = _cli_json(capsys, local_run)
    blessed = [l["path"] for l in leaves if l["blessed"]]
    assert "prune_cluster_pcqat" in blessed and "ptq" in blessed
    assert not any(l["pushed"] for l in leaves)  # no push destination configured
    assert all(l["reasons"] == [] for l in leaves if l["blessed"])


@pytest.fixture(scope="module")
def gated_run(local_run, tmp_path_factory):
    """From the same baseline and Examples (importers): cluster -> plain QAT (breaks the clusters)
    and a gzip limit no leaf can meet."""
    _, nodes = by_node(local_run)
    config = {
        **TREE_CONFIG, "name": "gated", "paths": ["cluster_cqat"],
        "baseline": {"model_uri": nodes["BaselineTrainer"]["outputs"]["model"][0].uri},
        "examples": {"uri": nodes["FashionMnistExampleGen"]["outputs"]["examples"][0].uri},
        "qat": {"scheme": "qat", "epochs": 1, "learning_rate": 1e-3},  # plain QAT moves every weight
        "requirements": {"max_int8_accuracy_drop_pp": 30.0, "max_gzip_bytes": 1000},
    }
    return run_tree(tmp_path_factory.mktemp("gated"), config)


def test_impossible_requirement_blesses_nothing_and_pushes_nothing(gated_run, capsys):
    store, nodes = by_node(gated_run)
    leaves = _cli_json(capsys, gated_run)
    assert sorted(l["path"] for l in leaves) == ["cluster_cqat", "ptq"]
    assert not any(l["blessed"] or l["pushed"] for l in leaves)
    assert not [n for n in nodes if n.startswith("Push_")]  # skipped by the TFX conditional
    for leaf in leaves:
        assert f"gzip size {leaf['gzip_bytes']:,} B > max 1,000 B" in leaf["reasons"]
        blessing = nodes[f"Evaluate_{leaf['path']}"]["outputs"]["blessing"][0]
        assert results.props(blessing)["blessed"] == 0
    assert nodes["Reporter"]["state"] == "COMPLETE"


def test_preservation_gate_names_the_layers(gated_run, capsys):
    leaves = {l["path"]: l for l in _cli_json(capsys, gated_run)}
    assert not any(r.startswith("preservation") for r in leaves["ptq"]["reasons"])
    reason = next(r for r in leaves["cluster_cqat"]["reasons"] if r.startswith("preservation: "))
    named = dict(re.findall(r"(\w+): (\d+) distinct values in an output channel > 8 clusters", reason))
    # Exactly the Conv2D/Dense kernels whose flatbuffer channels hold more than the 8 clusters.
    _, nodes = by_node(gated_run)
    with open(os.path.join(nodes["Convert_cluster_cqat"]["outputs"]["tflite_model"][0].uri, artifact_files.TFLITE_FILE),
              "rb") as f:
        layers = [l for l in flatbuffer.layer_stats(f.read()) if l["op"] != "DEPTHWISE_CONV_2D"]
    over = {l["layer"]: str(l["max_unique_per_channel"]) for l in layers if l["max_unique_per_channel"] > 8}
    assert named == over and len(named) >= 2, reason


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is part of the set-up (make setup installs Debian's chromium)"
    return exe


def test_html_report_renders_in_headless_chromium(local_run, tmp_path):
    run_dir = os.path.dirname(local_run)
    page = os.path.join(run_dir, artifact_files.REPORT_FILE)  # written next to the pipeline root
    store, nodes = by_node(local_run)
    artifact = nodes["Reporter"]["outputs"]["report"][0]
    with open(page) as f, open(os.path.join(artifact.uri, artifact_files.REPORT_FILE)) as g:
        html = f.read()
        assert g.read() == html
    # self-contained: no external resources
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    table = html[html.index("<h2 id='leaves'>"):html.index("<h2 id='tree'>")]
    assert table.count("<tr class=") == 8
    for section in ("tree", "pareto", "density"):
        img = re.search(rf"<h2 id='{section}'>.*?<img alt=\"\" src=\"data:image/png;base64,([^\"]+)\"", html, re.S)
        assert img, section
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(img.group(1))), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 400 and pixels.std() > 0.05, section
    assert ("after each stage of <b>prune -&gt; sparsity-preserving cluster -&gt; PCQAT</b>: baseline, pruned, "
            "clustered, int8 (the int8 codes stored in the .tflite)") in html
    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1400,3200", f"--screenshot={shot}", f"file://{page}"],
                   check=True, capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (3200, 1400)
    rows_with_ink = np.mean(pixels[..., :3].std(axis=1).mean(axis=1) > 0.01)
    assert rows_with_ink > 0.3  # the table, tree, plots are drawn, not a blank page


def test_the_per_layer_npu_view_of_every_leaf_renders_and_adds_up_to_vela(local_run, tmp_path, capsys):
    """'Where the NPU time goes': a table per leaf and target whose layer rows add up to the cycles
    Vela gave the leaf (report --format json), drawn by the browser."""
    page = os.path.join(os.path.dirname(local_run), artifact_files.REPORT_FILE)
    with open(page) as f:
        html = f.read()
    section = html[html.index("<h2 id='npu-layers'>"):]
    tables = dict(re.findall(r"<h3>(\w+ on [\w-]+): ([\d,]+) cycles</h3><table>", section))
    leaves = _cli_json(capsys, local_run)
    assert tables == {f"{l['path']} on {t}": f"{est['cycles']:,}" for l in leaves for t, est in l["npu"].items()}
    for leaf in leaves:
        rows = leaf["npu"]["ethos-u55-128"]["per_layer"]
        assert sum(r["cycles"] for r in rows) == leaf["npu"]["ethos-u55-128"]["cycles"], leaf["path"]
        assert {"conv_1", "pw_1", "logits"} <= {r["layer"] for r in rows}, leaf["path"]
    # The section alone, with the page's own style (a headless screenshot does not scroll to an anchor).
    alone = tmp_path / "npu_layers.html"
    alone.write_text(html[:html.index("<body>") + len("<body>")] + section[:section.index("<h2 id='density'>")]
                     + "</body></html>")
    shot = tmp_path / "npu_layers.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1400,1600", f"--screenshot={shot}", f"file://{alone}"],
                   check=True, capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(str(shot))
    assert np.mean(pixels[..., :3].std(axis=1).mean(axis=1) > 0.01) > 0.3  # the tables are drawn


def test_report_html_from_mlmd_matches_the_run(local_run, tmp_path, capsys):
    """`collabopt report --format html` rebuilds the run's page from MLMD: everything below the header
    line (which names who generated it, and when) is the page the run's Reporter wrote."""
    out = tmp_path / "again.html"
    cli.main(["report", "--mlmd", local_run, "--format", "html", "-o", str(out)])
    assert capsys.readouterr().out == f"wrote {out}\n"
    with open(os.path.join(os.path.dirname(local_run), artifact_files.REPORT_FILE)) as f:
        written = f.read()
    again = out.read_text()
    body = lambda page: page[page.index("<h2 id='leaves'>"):]  # noqa: E731
    assert body(again) == body(written) and body(again).count("<tr class=") == 8 and "id='density'" in again
    cli.main(["report", "--mlmd", local_run])
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:]] == ALL
    assert "ethos-u65-256 cycles" in table[0]


def test_vela_runs_once_per_leaf_and_target_and_the_gate_judges_those_numbers(local_run):
    """NPUCompiler compiles each leaf once per target with the configured options; LeafEvaluator
    judges exactly those numbers and compiles nothing itself (issue 10: it used to compile again,
    without the configured memory mode)."""
    _, nodes = by_node(local_run)
    root = os.path.dirname(local_run)
    runs = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f == "vela_stdout.txt"]
    leaves, targets = ALL, TREE_CONFIG["npu"]["targets"]
    assert len(runs) == len(leaves) * len(targets)
    for path in leaves:
        npu = results.props(nodes[f"NPU_{path}"]["outputs"]["npu_model"][0])
        evaluation = nodes[f"Evaluate_{path}"]["outputs"]["evaluation"][0]
        assert not os.path.exists(os.path.join(evaluation.uri, "npu"))
        for t in targets:
            assert results.props(evaluation)[f"{t}.npu_cycles"] == npu[f"{t}.npu_cycles"] > 0
