"""The tree hangs below channel pruning: thin -> prune -> cluster -> PCQAT on LocalDagRunner, read back
from the leaf's flatbuffer (thinner widths in NPU blocks, sparse, clustered, INT8), from Vela (fewer
cycles than ptq) and from MLMD (its drop is measured against the original baseline's ptq leaf)."""
import json
import os

import numpy as np
import pytest

from collabopt.core import artifact_files, tree_paths
from collabopt.core.npu import per_layer
from collabopt.core.tflite import flatbuffer
from collabopt.pipelines import nodes as pipeline_nodes

TARGET = "ethos-u55-128"
CLUSTERS = 8
PATH = "thin_prune_cluster_pcqat"
NODES = ["ChannelPruner", "ThinPruner", "ThinSparseClusterer", "ThinPCQAT"]


def test_every_path_hangs_below_thin_too_with_its_own_nodes():
    assert not [p for p in tree_paths.expand("all") if p.startswith("thin_")]  # all opt-in
    assert tree_paths.expand([PATH, "thin_qat"]) == ["ptq", "thin_qat", PATH]
    assert tree_paths.PATHS[PATH] == ("thin", "prune", "cluster", "qat")
    assert tree_paths.label(PATH) == "thin -> prune -> sparsity-preserving cluster -> PCQAT"
    assert [pipeline_nodes.stage_id(p) for p in tree_paths.prefixes(PATH)] == NODES
    assert [pipeline_nodes.stage_id(p) for p in tree_paths.prefixes("thin_cluster_cqat")] == [
        "ChannelPruner", "ThinClusterer", "ThinCQAT"]
    assert pipeline_nodes.stage_id(("thin", "qat")) == "ThinQAT"  # a thinned model is dense: plain QAT
    ids = {pipeline_nodes.stage_id(pre) for p in tree_paths.PATHS for pre in tree_paths.prefixes(p)}
    assert len(ids) == len({pre for p in tree_paths.PATHS for pre in tree_paths.prefixes(p)})  # one node each


@pytest.mark.slow  # a real (tiny) run: baseline, thin (Vela in the loop), prune, cluster, PCQAT, two leaves; 4.5 min alone, ~9 on a loaded machine
def test_thin_prune_cluster_pcqat_leaf_is_thinner_sparse_clustered_int8_and_faster(tmp_path, capsys):
    from ml_metadata.proto import metadata_store_pb2

    from collabopt import cli
    from collabopt.mlmd import results
    from collabopt.tests.helpers import by_node, lineage, run_tree

    config = {"name": "thin-tree-test", "paths": [PATH], "data": {"train_limit": 300, "eval_limit": 100},
              "baseline": {"epochs": 1, "width": 64, "blocks": 2}, "thin": {"epochs": 1, "keep_ratio": 0.5},
              "prune": {"target_sparsity": 0.5, "epochs": 1}, "cluster": {"number_of_clusters": CLUSTERS, "epochs": 1},
              "qat": {"epochs": 1}, "requirements": {"max_int8_accuracy_drop_pp": 100.0}, "npu": {"targets": [TARGET]}}
    mlmd = run_tree(tmp_path / "root", config)
    store, nodes = by_node(mlmd)
    assert all(nodes[n]["state"] == "COMPLETE" for n in NODES)
    npu = nodes[f"NPU_{PATH}"]["outputs"]["npu_model"][0]
    assert lineage(store, npu.id) == [f"NPU_{PATH}", f"Convert_{PATH}", *reversed(NODES), "BaselineTrainer"]

    cli.main(["report", "--mlmd", mlmd, "--format", "json"])
    leaves = {leaf["path"]: leaf for leaf in json.loads(capsys.readouterr().out)}
    assert sorted(leaves) == ["ptq", PATH] and not any(leaf["failed"] for leaf in leaves.values())
    ptq, leaf = leaves["ptq"], leaves[PATH]

    # The flatbuffer: thinner, in whole NPU blocks, sparse, at most CLUSTERS values per channel, INT8.
    tflite_dir = nodes[f"Convert_{PATH}"]["outputs"]["tflite_model"][0].uri
    with open(os.path.join(tflite_dir, artifact_files.TFLITE_FILE), "rb") as f:
        data = f.read()
    layers = {s["layer"]: s for s in flatbuffer.layer_stats(data)}
    with open(os.path.join(nodes["ChannelPruner"]["outputs"]["thinned_model"][0].uri, artifact_files.STATS_FILE)) as f:
        widths = json.load(f)["channel_widths"]
    block = per_layer.channel_granularity(TARGET)
    assert widths and all(after < before and after % block == 0 for before, after in widths.values())
    assert {g: layers[g]["shape"][0] for g in widths} == {g: after for g, (_, after) in widths.items()}
    assert layers["logits"]["shape"][0] == 10
    kernels = [s for s in layers.values() if s["op"] != "DEPTHWISE_CONV_2D"]
    sizes = [int(np.prod(s["shape"])) for s in kernels]
    sparsity = sum(s["sparsity"] * n for s, n in zip(kernels, sizes)) / sum(sizes)
    assert sparsity >= 0.45, sparsity
    assert max(s["max_unique_per_channel"] for s in kernels) <= CLUSTERS
    assert {s["dtype"] for s in layers.values()} == {"int8"}
    it = flatbuffer.interpreter(data)
    assert {d["dtype"].__name__ for d in it.get_input_details() + it.get_output_details()} == {"int8"}

    # Vela: fewer cycles than the original ptq leaf.
    assert leaf["npu"][TARGET]["cycles"] < ptq["npu"][TARGET]["cycles"]

    # The drop: against the original baseline's ptq leaf (not a thinned ptq), in MLMD and in the leaf.
    evaluation = nodes["Evaluate_ptq"]["outputs"]["evaluation"][0]
    inputs = [e for e in store.get_events_by_execution_ids([nodes[f"Evaluate_{PATH}"]["id"]])
              if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == "baseline"]
    assert [e.artifact_id for e in inputs] == [evaluation.id]
    assert leaf["baseline_int8_metric"] == ptq["int8_metric"]
    assert leaf["metric_drop"] == pytest.approx(ptq["int8_metric"] - leaf["int8_metric"])
    assert results.props(npu)[f"{TARGET}.npu_cycles"] == leaf["npu"][TARGET]["cycles"]
