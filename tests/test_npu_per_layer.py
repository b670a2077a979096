"""Vela's per-layer view: rows mapped to Keras layers, compute vs memory bound, MACs, block utilisation,
the CPU operators with Vela's reasons; and a thinned model's INT8 flatbuffer has the promised widths."""
import numpy as np
import pytest

from collabopt.core.model import baseline
from collabopt.core.npu import per_layer, vela
from collabopt.core.techniques.channels.surgery import thin
from collabopt.core.tflite import convert, flatbuffer
from collabopt.core.tfenv import keras, tf

L = keras.layers


def _int8(model, path):
    x = np.random.default_rng(0).random((16, *model.input_shape[1:])).astype("float32")
    path.write_bytes(convert.to_int8(model, convert.representative(x, 16)))
    return path


def test_channel_granularity_covers_every_vela_target():
    for acc in vela.valid_accelerator_configs():
        assert per_layer.channel_granularity(acc) == (16 if acc.startswith("ethos-u85") else 8)
    with pytest.raises(ValueError, match="unknown accelerator 'ethos-u99'"):
        per_layer.channel_granularity("ethos-u99")
    assert per_layer.block_util(60, 8) == 60 / 64 and per_layer.block_util(48, 16) == 1.0


def test_layer_from_tensor():
    assert per_layer.layer_from_tensor("m/pw_1_relu/Relu;m/pw_1/Conv2D") == "pw_1"
    assert per_layer.layer_from_tensor("m/avg_pool/Mean") == "avg_pool"
    assert per_layer.layer_from_tensor("m/quant_pw_1_relu/Relu;m/quant_pw_1/Conv2D") == "pw_1"  # a QAT leaf
    assert per_layer.layer_from_tensor("m/b0_add/add;m/b0_relu/Relu", {"b0_relu"}) == "b0_relu"


def test_parse_cpu_ops():
    text = ("Warning (supported operators) operator: GATHER, ofm: 'm/g/GatherV2'\n"
            "Reason: axis: 3 != batch_dims: 0\nReason: second\n\nother\n")
    assert per_layer.parse_cpu_ops(text) == [{"op": "GATHER", "name": "m/g/GatherV2",
                                              "reason": "axis: 3 != batch_dims: 0; second"}]


def test_per_layer_rows_map_to_keras_layers_and_name_cpu_ops(tmp_path):
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Lambda(lambda t: tf.gather(t, list(range(8)), axis=-1), name="gat")(x)
    x = L.Conv2D(12, 3, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="c2_bn")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(10, name="fc")(x), name="m")
    path = _int8(model, tmp_path / "m.tflite")
    res = per_layer.measure(path, tmp_path / "out", "ethos-u55-128", layer_names={ly.name for ly in model.layers})
    layers = res["layers"]
    assert {"c1", "c2", "gap", "fc", "gat"} <= set(layers), layers.keys()
    assert sum(r["cycles"] for r in res["rows"]) == res["npu_cycles"]
    assert layers["gat"]["ops"] == ["CPU:GatherV2"] and layers["gat"]["bound"] == "cpu"
    assert layers["c2"]["macs"] == 16 * 16 * 9 * 8 * 12 and layers["c2"]["bound"] in ("compute", "memory")
    assert [c["op"] for c in res["cpu_operators"]] == ["GATHER"] and res["cpu_operators"][0]["reason"]
    view = {v["layer"]: v for v in res["per_layer"]}
    assert all(set(v) == set(per_layer.VIEW_KEYS) for v in view.values())
    assert view["c2"]["channels"] == 12 and view["c2"]["block_util"] == 0.75  # 12 of 16 in blocks of 8
    assert view["c1"]["block_util"] == 1.0 and 0 < view["c1"]["mac_util_pct"] <= 100
    assert view["c2"]["cycles"] == max(view["c2"]["npu_cycles"], view["c2"]["memory_cycles"])


def test_thinned_int8_flatbuffer_has_the_promised_widths(tmp_path):
    model = baseline.ds_cnn((16, 16, 1), 10, width=32, blocks=2)
    keep = {"conv_1": list(range(0, 32, 2)), "pw_1": list(range(8)), "pw_2": list(range(24))}
    new, left = thin(model, keep)
    assert left == {}
    stats = {s["layer"]: s for s in flatbuffer.layer_stats(_int8(new, tmp_path / "t.tflite").read_bytes())}
    assert stats["conv_1"]["op"] == "CONV_2D" and stats["conv_1"]["shape"][0] == 16
    assert stats["dw_1"]["shape"][3] == 16  # the depthwise follows conv_1
    assert stats["pw_1"]["shape"][0] == 8 and stats["pw_1"]["shape"][3] == 16
    assert stats["dw_2"]["shape"][3] == 8
    assert stats["pw_2"]["shape"][0] == 24 and stats["pw_2"]["shape"][3] == 8
    fc = [s for s in stats.values() if s["op"] == "FULLY_CONNECTED"][0]
    assert fc["shape"] == [10, 24]


@pytest.mark.slow  # a real (tiny) run of the tree, ~1 min
def test_report_json_carries_the_per_layer_view_from_a_real_run(tmp_path, capsys):
    """`collabopt report --format json` reads every leaf's per-layer NPU view and CPU operators back from
    MLMD: one row per Keras layer, whose cycles add up to the leaf's Vela cycles and equal the rows
    of Vela's own per-layer CSV written by that run."""
    import json

    from collabopt import cli
    from collabopt.tests.helpers import run_tree

    target = "ethos-u55-128"
    config = {"name": "per-layer", "paths": ["ptq"], "data": {"train_limit": 200, "eval_limit": 64},
              "baseline": {"epochs": 1, "width": 16, "blocks": 1}, "npu": {"targets": [target]}}
    root = tmp_path / "root"
    mlmd = run_tree(root, config)
    cli.main(["report", "--mlmd", mlmd, "--format", "json"])
    (leaf,) = json.loads(capsys.readouterr().out)
    est = leaf["npu"][target]
    assert est["cpu_operators"] == [] and est["npu_op_pct"] == 100.0  # a DS-CNN runs wholly on the NPU
    view = {row["layer"]: row for row in est["per_layer"]}
    assert all(set(row) == set(per_layer.VIEW_KEYS) for row in view.values())
    assert {"conv_1", "dw_1", "pw_1", "logits"} <= set(view), sorted(view)
    assert sum(row["cycles"] for row in view.values()) == est["cycles"]
    assert view["pw_1"]["channels"] == 16 and view["pw_1"]["block_util"] == 1.0 and view["pw_1"]["macs"] > 0
    assert all(row["bound"] in ("compute", "memory") for row in view.values())
    # the same numbers as Vela's CSV of this leaf (the NPUCompiler's folder under the pipeline root)
    (csv_path,) = [p for p in root.rglob("*_per-layer.csv") if target in str(p)]
    rows = per_layer.parse_per_layer(csv_path)
    assert sum(r["cycles"] for r in rows) == est["cycles"]
