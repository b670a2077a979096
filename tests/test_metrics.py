"""core.metrics on hand-made arrays, the metric gate, the training section's config rules and the
fine-tuning loss/metrics it selects."""
import itertools

import numpy as np
import pytest

from collabopt import schemas
from collabopt.core.evaluation import gates, metrics
from collabopt.core.model.train import TrainingSpec

OUT = np.array([[0.1, 0.7, 0.2],   # top-1: 1, top-2: {1, 2}
                [0.5, 0.2, 0.3],   # top-1: 0, top-2: {0, 2}
                [0.3, 0.3, 0.4],   # top-1: 2, top-2: {2, 0 or 1}
                [0.0, 0.1, 0.9]])  # top-1: 2, top-2: {2, 1}
LABELS = np.array([1, 2, 2, 0])


def pairwise_auc(scores, labels):
    """Brute force: P(score of a positive > score of a negative), ties 1/2."""
    pos, neg = scores[labels != 0], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def spec(name, **kw):
    return TrainingSpec(eval_metric=name, **kw)


def test_accuracy_and_top_k():
    assert metrics.compute(spec("accuracy"), OUT, None, LABELS) == 2 / 4
    assert metrics.compute(spec("top_k_accuracy", top_k=2), OUT, None, LABELS) == 3 / 4
    assert metrics.compute(spec("top_k_accuracy", top_k=3), OUT, None, LABELS) == 1.0  # k >= classes: all
    # one output: the probability of class 1
    assert metrics.compute(spec("accuracy"), np.array([[0.2], [0.8], [0.6]]), None, np.array([0, 1, 0])) == 2 / 3


def test_mse_and_mae_against_the_label_or_the_features():
    out = np.array([[1.0, 2.0], [0.0, 0.0]])
    x = np.array([[1.0, 0.0], [1.0, 1.0]])  # errors per example: (0, 2) and (1, 1)
    assert metrics.compute(spec("mse"), out, x, [0, 0], metrics.FEATURES) == (4 / 2 + 2 / 2) / 2
    assert metrics.compute(spec("mae"), out, x, [0, 0], metrics.FEATURES) == (2 / 2 + 2 / 2) / 2
    assert metrics.compute(spec("mse"), np.array([[0.5], [3.0]]), None, np.array([1, 1])) == (0.25 + 4) / 2
    with pytest.raises(metrics.MetricError, match=r"^mse: the model gives 2 values per example, its target has 1$"):
        metrics.compute(spec("mse"), out, x, [0, 0])


def test_auc_equals_the_pairwise_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(labels * 0.8, 1.0)  # distinct, overlapping classes
    assert 0.6 < pairwise_auc(scores, labels) < 0.9
    logits = np.stack([np.zeros_like(scores), scores], axis=1)  # 2 outputs: output 1 - output 0
    # The histogram's resolution (~0.44% of a score): only positive/negative pairs that share a bin
    # may count as ties; here some do, and the AUC is off by at most half of them.
    bins = metrics._bins(scores)  # noqa: SLF001
    shared = sum(bp == bn for bp, bn in itertools.product(bins[labels != 0], bins[labels == 0]))
    bound = shared / (2 * np.sum(labels != 0) * np.sum(labels == 0))
    assert 0 < bound < 1e-3
    assert abs(metrics.compute(spec("auc"), logits, None, labels) - pairwise_auc(scores, labels)) <= bound
    spread = 1.01 ** rng.permutation(300) - 1.5  # no two scores within 0.44% of each other: exact
    assert metrics.compute(spec("auc"), spread[:, None], None, labels) == pytest.approx(
        pairwise_auc(spread, labels), abs=1e-12)
    ties = np.array([0.5, 0.5, 0.1, 0.9])  # a positive and a negative tie: 1/2
    assert metrics.compute(spec("auc"), ties[:, None], None, np.array([1, 0, 0, 1])) == pairwise_auc(
        ties, np.array([1, 0, 0, 1])) == 0.875


def test_autoencoder_auc_scores_the_reconstruction_error():
    rng = np.random.default_rng(1)
    x = rng.random((50, 64))
    out = x + rng.normal(0, 1, (50, 1)) * rng.random((50, 64))  # per-example error of varying size
    labels = rng.integers(0, 2, 50)
    err = np.mean((out - x) ** 2, axis=1)
    got = metrics.compute(spec("auc"), out, x, labels, metrics.FEATURES)
    assert got == pytest.approx(pairwise_auc(err, labels), abs=1e-12)


def test_summaries_of_parts_add_up_to_the_whole():
    """What Beam does: per-batch summaries, summed in any grouping."""
    rng = np.random.default_rng(2)
    x, labels = rng.random((40, 8)), rng.integers(0, 2, 40)
    out = x + rng.normal(0, 0.3, (40, 8))
    for s, target in ((spec("auc"), metrics.FEATURES), (spec("mse"), metrics.FEATURES), (spec("accuracy"), metrics.LABEL),
                      (spec("top_k_accuracy", top_k=3), metrics.LABEL)):
        whole = metrics.summary(s, out, x, labels, target)
        parts = sum(metrics.summary(s, out[i:i + 7], x[i:i + 7], labels[i:i + 7], target) for i in range(0, 40, 7))
        np.testing.assert_allclose(parts, whole, rtol=1e-12)
        assert metrics.value(s.eval_metric, parts + metrics.zeros(s.eval_metric)) == pytest.approx(
            metrics.value(s.eval_metric, whole), rel=1e-12)


def test_auc_needs_both_labels():
    with pytest.raises(metrics.MetricError, match=r"^auc: the eval split needs both labels \(0 and not 0\); "
                                                  r"it has 0 label-0 and 3 other examples$"):
        metrics.compute(spec("auc"), np.array([[0.1], [0.2], [0.3]]), None, np.array([1, 1, 1]))


LEAF = {"gzip_bytes": 1, "preservation_failures": [], "npu": {}}


def test_the_metric_gate_follows_the_metrics_direction_and_passes_at_the_limit():
    mse = {**LEAF, "eval_metric": "mse", "int8_metric": 0.030}
    assert gates.gate(mse, {"max_metric_drop": 0.010}, 0.020) == []  # at the limit: passes
    assert gates.gate(mse, {"max_metric_drop": 0.009}, 0.020) == [
        "INT8 MSE 0.03 is 0.01 above the baseline's 0.02 (max drop 0.009)"]
    assert gates.gate(mse, {"max_metric_drop": 0.0}, 0.040) == []  # lower MSE is better, not a drop
    auc = {**LEAF, "eval_metric": "auc", "int8_metric": 0.90}
    assert gates.gate(auc, {"max_metric_drop": 0.05}, 0.95) == []
    assert gates.gate(auc, {"max_metric_drop": 0.04}, 0.95) == [
        "INT8 ROC AUC 90.00% is 5.00 pp below the baseline's 95.00% (max drop 0.04)"]
    # max_int8_accuracy_drop_pp is the same rule, in pp, for top-1 accuracy
    acc = {**LEAF, "eval_metric": "accuracy", "int8_metric": 0.85, "int8_accuracy": 0.85}
    assert gates.gate(acc, {"max_int8_accuracy_drop_pp": 1.0}, 0.86) == gates.gate(acc, {"max_metric_drop": 0.01}, 0.86) == []
    assert gates.gate(acc, {"max_metric_drop": 0.005}, 0.86) == [
        "INT8 accuracy 85.00% is 1.00 pp below the baseline's 86.00% (max drop 0.005)"]
    assert gates.allowed_drop({"max_int8_accuracy_drop_pp": 1.0}, "mse") is None


def test_retraining_compares_the_metric_in_its_direction():
    deployed = {**LEAF, "eval_metric": "mse", "int8_metric": 0.02, "version": "3"}
    assert gates.not_worse({**LEAF, "eval_metric": "mse", "int8_metric": 0.01}, deployed) == []
    assert gates.not_worse({**LEAF, "eval_metric": "mse", "int8_metric": 0.03}, deployed) == [
        "worse than deployed version 3: INT8 mse 0.03 > 0.02"]
    # a leaf deployed before eval_metric existed: accuracy fields only
    old = {**LEAF, "int8_accuracy": 0.9, "version": "1"}
    assert gates.not_worse({**LEAF, "eval_metric": "accuracy", "int8_metric": 0.8}, old) == [
        "worse than deployed version 1: INT8 accuracy 80.00% < 90.00%"]


@pytest.mark.parametrize("doc, problem", [
    ({"training": {"eval_metric": "mse"}, "requirements": {"max_int8_accuracy_drop_pp": 1.0}},
     "requirements.max_int8_accuracy_drop_pp: judges top-1 accuracy, but training.eval_metric is 'mse'; "
     "use requirements.max_metric_drop (in mse's units)"),
    ({"training": {"eval_metric": "auc"}, "requirements": {"max_metric_drop": 2}},
     "requirements.max_metric_drop: 2 is more than auc can drop (its values are fractions in [0, 1]: 0.01 = 1 pp)"),
    ({"requirements": {"max_metric_drop": 0.01, "max_int8_accuracy_drop_pp": 1.0}},
     "requirements.max_metric_drop: set together with max_int8_accuracy_drop_pp; use one"),
    ({"training": {"loss": "cross_entropy"}}, "training.loss: 'cross_entropy' is not one of"),
    ({"training": {"eval_metric": "f1"}}, "training.eval_metric: 'f1' is not one of"),
])
def test_a_requirement_that_does_not_fit_the_metric_is_a_config_error(doc, problem):
    with pytest.raises(schemas.ConfigError) as e:
        schemas.check(doc)
    assert str(e.value).startswith(problem)
    schemas.check({"training": {"eval_metric": "mse"}, "requirements": {"max_metric_drop": 5.0}})  # mse: any size


def test_the_training_section_picks_the_loss_and_metrics_and_hooks_override_them():
    from collabopt.core.model import train
    from collabopt.core.tfenv import keras
    rng = np.random.default_rng(3)
    x = rng.random((32, 8)).astype(np.float32)
    inp = keras.Input((8,), name="x")
    ae = keras.Model(inp, keras.layers.Dense(8)(keras.layers.Dense(3)(inp)))
    train.fit(ae, x, x, epochs=1, batch_size=16, training=TrainingSpec(loss="mse"))
    assert isinstance(ae.loss, keras.losses.MeanSquaredError)
    assert ae.compiled_metrics._user_metrics == []  # no accuracy for a regression loss  # noqa: SLF001
    hooks = TrainingSpec(loss_fn=lambda m: keras.losses.MeanAbsoluteError(), metrics_fn=lambda: ["mse"])
    train.fit(ae, x, x, epochs=1, batch_size=16, training=hooks)
    assert isinstance(ae.loss, keras.losses.MeanAbsoluteError) and ae.compiled_metrics._user_metrics == ["mse"]  # noqa: SLF001
    sigmoid = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    assert train.loss_for(sigmoid, x, name="binary_crossentropy").get_config()["from_logits"] is False
    # a named cross-entropy still follows the model's output: softmax -> from probabilities
    softmax = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    y = np.arange(32) % 3
    train.fit(softmax, x, y, epochs=1, batch_size=16, training=TrainingSpec(loss="sparse_categorical_crossentropy"))
    assert softmax.loss.get_config()["from_logits"] is False
    assert softmax.compiled_metrics._user_metrics == ["accuracy"]  # noqa: SLF001


def test_the_report_and_the_leaf_table_show_the_configured_metric():
    from collabopt.mlmd import results
    from collabopt.core.report import html_page
    leaf = {**{k: None for k in results.LEAF_FIELDS}, "path": "prune_ptq", "eval_metric": "mse", "top_k": 5,
            "fp32_metric": 0.0123, "int8_metric": 0.0125, "baseline_int8_metric": 0.0124, "metric_drop": 0.0001,
            "tflite_bytes": 4000, "gzip_bytes": 3000, "saving_pct": 25.0, "sparsity": 0.5,
            "max_unique_per_channel": 200, "max_unique_per_tensor": 250, "blessed": True, "reasons": [], "npu": {}}
    page = html_page.table([leaf])
    assert "<th>FP32 / QAT MSE</th><th>INT8 MSE</th><th>drop</th>" in page
    assert "<td>0.0123</td><td>0.0125</td><td>+0.0001</td>" in page
    lines = results.leaf_table([leaf]).splitlines()
    assert lines[0].split()[:5] == ["path", "fp32", "MSE", "int8", "MSE"] and "drop" in lines[0]
    assert lines[1].split()[:4] == ["prune_ptq", "0.0123", "0.0125", "+0.0001"]
    top1 = {**leaf, "eval_metric": "accuracy", "fp32_metric": 0.9, "int8_metric": 0.89, "metric_drop": 0.01}
    assert "<td>90.00%</td><td>89.00%</td><td>+1.00</td>" in html_page.table([top1])
    assert results.leaf_table([top1]).splitlines()[1].split()[:4] == ["prune_ptq", "90.00%", "89.00%", "+1.00"]
