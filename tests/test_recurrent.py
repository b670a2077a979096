"""Recurrent keyword spotters (issue 20): LSTM and GRU models go through the tree unrolled over their
fixed time length, every leaf full INT8 with Vela numbers; an INT8 conversion that segfaults (as the
calibrator did on a batch-1 GRU) fails its own path only: `collabopt run` exits 3 and writes the report."""
import json
import os

import numpy as np
import pytest
import yaml

from collabopt.core.data import examples_io
from collabopt.core.model import keras_io
from collabopt.core.techniques import layer_support, recurrent
from collabopt.core.tfenv import keras
from collabopt.tests.cli_processes import collabopt

L = keras.layers
STEPS, FEATURES, CLASSES = 8, 10, 4  # MFCC-like frames; 8 steps keep each unrolled conversion short
TARGET = "ethos-u55-128"


def kws(kind, steps=STEPS, units=16):
    i = keras.Input((steps, FEATURES), name="mfcc")
    x = getattr(L, kind)(units, name="rnn")(i)
    return keras.Model(i, L.Dense(CLASSES, activation="softmax", name="head")(x), name=f"{kind.lower()}_kws")


def stacked_kws(steps=STEPS, units=16):
    """An LSTM keyword spotter with a GRU on top: one tree run takes both kinds through every stage."""
    i = keras.Input((steps, FEATURES), name="mfcc")
    x = L.LSTM(units, return_sequences=True, name="lstm")(i)
    x = L.GRU(units, name="gru")(x)
    return keras.Model(i, L.Dense(CLASSES, activation="softmax", name="head")(x), name="lstm_gru_kws")


def test_unrolled_models_compute_what_the_loops_did_and_qat_names_what_it_leaves_out():
    for kind in ("LSTM", "GRU"):
        m = kws(kind)
        u, done, skipped = recurrent.unroll(m)  # checks outputs equal (RewriteError otherwise)
        assert done == {"rnn": f"{kind} unrolled over {STEPS} time steps"} and skipped == {}
        assert u.get_layer("rnn").unroll and not m.get_layer("rnn").unroll
        assert layer_support.unsupported(u, "prune") == {} and layer_support.unsupported(u, "cluster") == {}
        assert layer_support.unsupported(u, "qat") == {"rnn": f"{kind} is not in TFMOT's 8-bit quantization registry"}
    i = keras.Input((STEPS, FEATURES))
    bi = keras.Model(i, L.Bidirectional(L.GRU(8), name="bi")(i))
    assert recurrent.unroll(bi)[1] == {"bi": "Bidirectional unrolled over 8 time steps"}
    i = keras.Input((None, FEATURES))
    free = keras.Model(i, L.LSTM(8, name="free")(i))
    u, done, skipped = recurrent.unroll(free)
    assert u is free and done == {} and skipped == {
        "free": "LSTM over an unknown number of time steps cannot be unrolled: give the model input a fixed time length"}


def _tree(tmp, paths):
    r = np.random.default_rng(0)
    x, y = r.random((256, STEPS, FEATURES), dtype=np.float32), r.integers(0, CLASSES, 256)
    examples_io.write_examples(str(tmp / "examples"), {"train": (x, y), "eval": (x[:64], y[:64])}, image_key="mfcc")
    keras_io.save_model(stacked_kws(), str(tmp / "model" / keras_io.SERVING_DIR))  # as saved: rolled, dynamic batch
    cfg = {"name": "lstm-gru-kws", "paths": paths, "examples": {"uri": str(tmp / "examples")},
           "baseline": {"model_uri": str(tmp / "model")},
           "data": {"feature_key": "mfcc", "feature_shape": [STEPS, FEATURES], "scale": 1.0,
                    "train_limit": 192, "eval_limit": 64},
           "prune": {"epochs": 1}, "cluster": {"epochs": 1}, "qat": {"epochs": 1}, "npu": {"targets": [TARGET]}}
    (tmp / "tree.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp / "tree.yaml"), str(tmp / "root")


def _leaves(tmp, root):
    code, log = collabopt("report", "--root", root, "--format", "json", log=tmp / "report.log")
    assert code == 0, log[-3000:]
    return {l["path"]: l for l in json.loads(log[log.index("["):log.rindex("]") + 1])}


def _assert_int8_leaf(leaf):
    assert not leaf["failed"] and leaf["error"] is None, leaf
    assert 0 <= leaf["int8_accuracy"] <= 1 and leaf["npu"][TARGET]["cycles"] > 0


@pytest.mark.slow
def test_an_lstm_gru_keyword_spotter_goes_through_the_tree_and_a_crashed_conversion_fails_its_path_alone(tmp_path):
    crash = "prune_ptq"
    paths = ["ptq", "prune_cluster_pcqat", crash]
    config, root = _tree(tmp_path, paths)
    code, log = collabopt("run", config, "--root", root, log=tmp_path / "run.log",
                          faults=[("segfault_in_conversion", (crash,))])
    assert code == 3, log[-3000:]
    assert os.path.exists(os.path.join(root, "report.html"))
    assert "[rewrite] lstm: LSTM unrolled over 8 time steps" in log and "[rewrite] gru: GRU unrolled over 8 time steps" in log
    leaves = _leaves(tmp_path, root)
    assert sorted(leaves) == sorted(paths)
    for p in ("ptq", "prune_cluster_pcqat"):
        _assert_int8_leaf(leaves[p])
    assert leaves[crash]["failed"] and leaves[crash]["error"].endswith("INT8 conversion crashed (signal 11)")
    assert f"FAILED path {crash}: " in log


def test_a_layer_left_out_of_preserving_qat_keeps_its_clusters(caplog):
    """Was: CQAT left the LSTM out and fine-tuned it freely: its 8-value kernels came out with ~350
    values, 9 per INT8 output channel, and the preservation gate failed the zoo's `cluster_cqat` leaf."""
    import logging

    from collabopt.core.techniques import optimize
    r = np.random.default_rng(0)
    x, y = r.random((64, STEPS, FEATURES), dtype=np.float32), r.integers(0, CLASSES, 64)
    c = optimize.cluster(recurrent.unroll(kws("LSTM"))[0], x, y, number_of_clusters=8, epochs=1)
    clustered = [w.numpy() for w in c.get_layer("rnn").weights[:2]]  # kernel, recurrent_kernel
    assert all(len(np.unique(w)) <= 8 for w in clustered)
    with caplog.at_level(logging.INFO, logger="collabopt"):
        q, scheme = optimize.preserving_qat(c, x, y, scheme="cqat", epochs=1, batch_size=16, learning_rate=1e-2,
                                            left_out=layer_support.plan(c, "qat"))
    assert scheme == "cqat"
    assert "[cqat] left out of QAT, kept as they are (not fine-tuned): rnn" in caplog.messages
    rnn = next(l.layer for l in q.layers if getattr(l, "layer", None) is not None and l.layer.name == "rnn")
    for before, after in zip(clustered, rnn.weights[:2]):
        np.testing.assert_array_equal(after.numpy(), before)
    head = next(l for l in q.layers if getattr(l, "layer", None) is not None and l.layer.name == "head")
    assert head.trainable  # the layers QAT quantizes are fine-tuned as before
    from collabopt.core.evaluation import gates
    from collabopt.core.tflite import convert, flatbuffer
    layers = flatbuffer.layer_stats(convert.to_int8(q, convert.representative(x, 16)))
    assert {l["dtype"] for l in layers} == {"int8"} and len(layers) == 2 * STEPS + 1
    assert gates.preservation(layers, {"number_of_clusters": 8}) == []
