"""Per-layer sensitivity: one-shot kernels, real INT8 conversion and real Vela totals per change."""
import numpy as np
import pytest

from collabopt.core.tflite import flatbuffer, convert
from collabopt.core.data import inputs
from collabopt.search import per_layer, sensitivity
from collabopt.core.model import baseline, train

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier


def test_one_shot_kernels():
    w = np.arange(-6, 6, dtype=np.float32).reshape(3, 4) + 0.5  # |w| 0.5 .. 5.5, each value once
    p = sensitivity.prune_kernel(w, 0.5)
    assert np.count_nonzero(p == 0) == 6 and np.all(np.abs(w[p == 0]) < np.abs(w[p != 0]).min())
    c = sensitivity.cluster_kernel(p, 3)  # the zero is one of the 3 clusters: 2 centroids for the rest
    assert set(np.unique(c)) == {0.0, -4.5, 4.5} and np.all((c == 0) == (p == 0))
    assert len(np.unique(sensitivity.cluster_kernel(w, 4))) == 4


@pytest.fixture(scope="module")
def trained(examples_uri):
    spec = inputs.DataSpec(examples_uri, feature_shape=(28, 28, 1), train_limit=300)
    m = baseline.ds_cnn(width=32, blocks=2)
    train.fit(m, spec.train_dataset(32), epochs=1, batch_size=32, learning_rate=1e-3)
    return m, sensitivity.Sample(spec, representative=50, eval_limit=100)


def test_table_measures_each_layer_alone_on_vela(trained, tmp_path):
    model, sample = trained
    assert sensitivity.layers(model, "prune") == ["conv_1", "pw_1", "pw_2", "logits"]
    rows, base = sensitivity.table(model, sample, str(tmp_path), sparsities=(0.75,), clusters=(4,))
    assert [(r["layer"], r["technique"], r["value"]) for r in rows] == [
        (n, "prune", 0.75) for n in ("conv_1", "pw_1", "pw_2", "logits")] + [
        (n, "cluster", 4) for n in ("conv_1", "pw_1", "pw_2", "logits")]
    by = {(r["layer"], r["technique"]): r for r in rows}
    # the 32x32 pointwise kernels are most of the weights: pruning one to 75% shrinks Vela's encoded
    # weights, and clustering it to 4 values does too (its weight encoder compresses repeated values)
    assert by["pw_2", "prune"]["saved"]["encoded_weights_bytes"] > 0
    assert by["pw_2", "cluster"]["saved"]["encoded_weights_bytes"] > 0
    # the change really is in the flatbuffer: only pw_2 became 75% sparse
    tfl = convert.to_int8(sensitivity.one_shot(model, {"pw_2": 0.75}), sample.data_spec.representative(50))
    sparsity = {l["layer"]: l["sparsity"] for l in flatbuffer.layer_stats(tfl)}
    assert sparsity["pw_2"] >= 0.75 and sparsity["pw_1"] < 0.1
    # the saved numbers are Vela's totals diffed: changed = unchanged - saved
    m = sensitivity.measure(sensitivity.one_shot(model, {"pw_2": 0.75}), sample, str(tmp_path / "again"))
    assert m["encoded_weights_bytes"] == base["encoded_weights_bytes"] - by["pw_2", "prune"]["saved"][
        "encoded_weights_bytes"]
    # the drop is the configured metric's (top-1 accuracy here: a fraction of the 100 eval examples)
    assert 0.0 <= base["int8_metric"] <= 1.0 and all(abs(r["drop"] * 100 - round(r["drop"] * 100)) < 1e-9 for r in rows)
    # a schedule from the real table stays within its budget (drops summed)
    totals = {k: base[k] for k in ("encoded_weights_bytes", "npu_cycles")}
    sched, spent = per_layer.build(rows, "prune", 0.02, totals)
    assert spent <= 0.02 and sum(by[l, "prune"]["drop"] for l in sched) == pytest.approx(spent)
