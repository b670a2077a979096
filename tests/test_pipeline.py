"""The PCQAT path end to end, measured in MLMD and in the INT8 flatbuffer (the Beam runner:
tests/test_failed_paths.py)."""
import json
import os

from collabopt.mlmd import results
from collabopt.core.tflite import flatbuffer
from collabopt.core import artifact_files

from collabopt.tests.helpers import TREE_CONFIG, by_node
import pytest

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

TARGET = TREE_CONFIG["prune"]["target_sparsity"]
CLUSTERS = TREE_CONFIG["cluster"]["number_of_clusters"]


def _tflite(nodes, node):
    art = nodes[node]["outputs"]["tflite_model"][0]
    with open(os.path.join(art.uri, artifact_files.TFLITE_FILE), "rb") as f:
        return art, f.read()


def test_flatbuffer_keeps_sparsity_and_clusters(local_run):
    _, nodes = by_node(local_run)
    art, tflite = _tflite(nodes, "Convert_prune_cluster_pcqat")
    layers = flatbuffer.layer_stats(tflite)  # measured again here, from the flatbuffer itself
    judged = [l for l in layers if l["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(judged) == 6 and all(l["dtype"] == "int8" for l in layers)
    # Clustered per tensor, so at most k int8 values in the whole kernel (hence in each channel too).
    broken = [f"{l['layer']} sparsity={l['sparsity']:.3f} uniq/tensor={l['unique_per_tensor']}"
              for l in judged if l["sparsity"] < TARGET - 0.02 or l["unique_per_tensor"] > CLUSTERS]
    assert not broken, f"PCQAT lost sparsity/clusters in: {broken}"
    # The component reports the same, per layer, and its MLMD properties agree.
    assert results.props(art)["preservation_ok"] == 1
    assert results.props(art)["mode"] == "qat"
    assert results.props(art)["max_unique_per_channel"] <= CLUSTERS
    with open(os.path.join(art.uri, artifact_files.STATS_FILE)) as f:
        stats = json.load(f)
    assert stats["promises"] == {"target_sparsity": TARGET, "number_of_clusters": CLUSTERS, "per_channel": False}
    assert [l["max_unique_per_channel"] for l in stats["layers"]] == [l["max_unique_per_channel"] for l in layers]


def test_depthwise_kernels_are_reported_not_clustered(local_run):
    """TFMOT clusters no DepthwiseConv2D kernel: the component lists them with their real counts."""
    _, nodes = by_node(local_run)
    _, tflite = _tflite(nodes, "Convert_prune_cluster_pcqat")
    dw = [l for l in flatbuffer.layer_stats(tflite) if l["op"] == "DEPTHWISE_CONV_2D"]
    assert [l["layer"] for l in dw] == [f"dw_{i}" for i in range(1, 5)]
    assert all(l["unique_per_tensor"] > CLUSTERS for l in dw)


def test_pcqat_keeps_the_compression_of_prune_cluster_ptq(local_run):
    _, nodes = by_node(local_run)
    pcqat = results.props(nodes["Convert_prune_cluster_pcqat"]["outputs"]["tflite_model"][0])
    ptq = results.props(nodes["Convert_prune_cluster_ptq"]["outputs"]["tflite_model"][0])
    base = results.props(nodes["Convert_ptq"]["outputs"]["tflite_model"][0])
    assert pcqat["saving_pct"] >= ptq["saving_pct"] - 1.0, (pcqat["saving_pct"], ptq["saving_pct"])
    assert ptq["saving_pct"] > base["saving_pct"] + 10  # the collaborative techniques do compress
    # Shared centroids and ranges: k int8 values per tensor, fewer than PTQ's per-channel scales give.
    assert pcqat["max_unique_per_tensor"] <= CLUSTERS < ptq["max_unique_per_tensor"]
    assert pcqat["int8_accuracy"] > 0.5 and base["int8_accuracy"] > 0.5


def test_vela_compiles_everything_to_the_npu(local_run):
    _, nodes = by_node(local_run)
    art = nodes["NPU_prune_cluster_pcqat"]["outputs"]["npu_model"][0]
    p = results.props(art)
    assert p["accelerator_config"] == "ethos-u55-128"
    assert p["npu_op_pct"] == 100.0 and p["cpu_ops"] == 0 and p["npu_ops"] >= 10
    assert p["npu_cycles"] > 0 and p["inference_time_s"] > 0 and p["encoded_weights_bytes"] > 0
    assert p["ethos-u55-128.npu_cycles"] == p["npu_cycles"]
    # Both configured targets, each with its own numbers (the u65 is faster per inference).
    assert 0 < p["ethos-u65-256.npu_cycles"] < p["ethos-u55-128.npu_cycles"]
    for target in TREE_CONFIG["npu"]["targets"]:
        assert os.path.isfile(os.path.join(art.uri, target, "model_vela.tflite"))
