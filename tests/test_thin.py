"""The thin stage (channel pruning for the NPU) on a compute-bound DS-CNN: a smaller dense model whose
INT8 leaf costs Vela fewer cycles than the ptq leaf of its input, with widths in the target's channel
blocks read back from the flatbuffer; layers it cannot thin are named, or fail it under strict."""
import os

import pytest

from collabopt.core import artifact_files, stages
from collabopt.core.model import baseline, keras_io
from collabopt.core.techniques.channels import thinning
from collabopt.core.tflite import flatbuffer
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import fashion_mnist_examples

FIT = stages.FitSpec(epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return stages.DataSpec(fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=256,
                                                  eval_limit=64))


def _leaf(model_dir, spec, out):
    stages.to_tflite(model_dir, spec, out + "_t", representative_samples=32, evaluate=False)
    tflite = os.path.join(out + "_t", artifact_files.TFLITE_FILE)
    return tflite, stages.compile_npu(tflite, out + "_n")["ethos-u55-128"]


@pytest.mark.slow  # ~80 s: fine-tuning and Vela compiles while it chooses
def test_thin_leaf_is_faster_on_vela_than_ptq(spec, tmp_path):
    base = str(tmp_path / "base")
    keras_io.save_model(baseline.ds_cnn(width=64, blocks=2), os.path.join(base, artifact_files.MODEL_DIR))
    stats = stages.thin(base, spec, str(tmp_path / "thin"), keep_ratio=0.5, fit=FIT)
    _, ptq = _leaf(base, spec, str(tmp_path / "ptq"))
    tflite, thin = _leaf(str(tmp_path / "thin"), spec, str(tmp_path / "thin"))
    # the compute-bound DS-CNN: fewer channels are fewer cycles, as the stage measured while choosing
    assert thin["npu_cycles"] < 0.75 * ptq["npu_cycles"]
    assert stats["vela_cycles_before"] == ptq["npu_cycles"] and stats["target_met"] is True
    assert stats["vela_cycles_after"] == pytest.approx(thin["npu_cycles"], rel=0.02)
    layers = {s["layer"]: s for s in flatbuffer.layer_stats(open(tflite, "rb").read())}
    for group, (before, after) in stats["channel_widths"].items():
        assert before == 64 and after % 8 == 0 and after < before  # whole blocks of 8 on ethos-u55-128
        assert layers[group]["shape"][0] == after  # the flatbuffer's output channels
    assert layers["logits"]["shape"][0] == 10  # the model output keeps its width
    assert stats["excluded_layers"] == {"thin": {}} and stats["num_params"] < 0.6 * keras_io.load_model(
        base).count_params()


def _with_permute():
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, name="a")(inp)
    x = L.Permute((3, 1, 2), name="perm")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(2, name="fc")(x))


def test_left_out_named_excluded_and_strict(tmp_path):
    model = _with_permute()
    rep = lambda: iter([])  # noqa: E731 (never reached: strict fails first)
    with pytest.raises(thinning.UnthinnableLayersError, match=r"thin: 1 layer\(s\) channel surgery cannot thin "
                                                               r"\(strict: true\): a \(feeds perm: Permute layer\)"):
        thinning.thin_for_npu(model, rep, "ethos-u55-128", str(tmp_path), keep_ratio=0.5, strict=True)
    graph = thinning.ChannelGraph(model)
    assert thinning.exclude(graph, ["a"]) == {"a": "excluded by thin.exclude_layers"}
    assert thinning.left_out(graph, excluded={"a"}) == {}
    assert thinning.left_out(thinning.ChannelGraph(model)) == {"a": "feeds perm: Permute layer"}


def test_thin_ptq_is_opt_in_and_hangs_below_the_baseline():
    from collabopt.core import tree_paths
    from collabopt.pipelines import nodes
    assert "thin_ptq" not in tree_paths.expand("all")
    assert tree_paths.expand(["thin_ptq"]) == ["ptq", "thin_ptq"] and tree_paths.label("thin_ptq") == "thin -> PTQ"
    assert nodes.stage_id(("thin",)) == "ChannelPruner"


@pytest.mark.slow  # a real (tiny) run of the tree's thin_ptq path and its ptq reference, ~2 min
def test_thin_ptq_leaf_runs_in_fewer_vela_cycles_than_ptq_in_mlmd(tmp_path, capsys):
    """paths: [thin_ptq] on LocalDagRunner: ChannelPruner hangs below the baseline, its leaf goes
    through the same INT8 / Vela / evaluation nodes, and MLMD says it runs in fewer NPU cycles than
    the ptq leaf, its drop measured against that leaf."""
    import json

    from collabopt import cli
    from collabopt.mlmd import results
    from collabopt.tests.helpers import by_node, run_tree

    target = "ethos-u55-128"
    config = {"name": "thin-test", "paths": ["thin_ptq"], "data": {"train_limit": 300, "eval_limit": 100},
              "baseline": {"epochs": 1, "width": 64, "blocks": 2}, "thin": {"epochs": 1, "keep_ratio": 0.5},
              "requirements": {"max_int8_accuracy_drop_pp": 100.0}, "npu": {"targets": [target]}}
    mlmd = run_tree(tmp_path / "root", config)
    cli.main(["report", "--mlmd", mlmd, "--format", "json"])
    leaves = {leaf["path"]: leaf for leaf in json.loads(capsys.readouterr().out)}
    assert sorted(leaves) == ["ptq", "thin_ptq"] and not any(leaf["failed"] for leaf in leaves.values())
    ptq, thin = (leaves[p]["npu"][target]["cycles"] for p in ("ptq", "thin_ptq"))
    assert thin < 0.8 * ptq, (thin, ptq)
    _, nodes = by_node(mlmd)
    assert nodes["ChannelPruner"]["state"] == "COMPLETE"
    thinned = results.props(nodes["ChannelPruner"]["outputs"]["thinned_model"][0])
    assert thinned["vela_cycles_before"] == ptq  # the stage measured the ptq leaf's Vela cycles itself
    assert thinned["vela_cycles_after"] == pytest.approx(thin, rel=0.02)
    assert results.props(nodes["NPU_thin_ptq"]["outputs"]["npu_model"][0])[f"{target}.npu_cycles"] == thin
