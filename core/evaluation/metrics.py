"""The evaluation metrics: the one home of what a leaf is measured by (Keras FP32/fake-INT8 outputs
and INT8 TFLite outputs alike, in Beam or in one process) and which way is better.

A metric is computed from a *summary*: a fixed-length float64 array that adds up, so Beam sums the
per-batch summaries (any order, any split) and `value` turns the total into the number. AUC's
summary is a histogram of scores per label: AUC_BINS bins of asinh(score / 1e-6), i.e. ~0.44%
relative resolution for |score| > 1e-5 (scores beyond ~1e9 share the end bins); a positive and a
negative example in one bin count as a tie (1/2), so the AUC is exact unless such pairs exist.

What is compared (`target`, the config's training.target, held by inputs.DataSpec): the label (classifiers; mse/mae on a numeric label), or the features
(an autoencoder: the output is compared with its input; its AUC scores each example by its
reconstruction error against the 0/1 anomaly label, label != 0 = anomaly).
"""
import dataclasses

import numpy as np

LABEL, FEATURES = "label", "features"  # training.target (inputs.DataSpec.target)

AUC_BINS = 16384
_AUC_SCALE, _AUC_SPAN = 1e-6, 36.0  # asinh(1e9 / 1e-6) ~ 35.2


class MetricError(ValueError):
    """Outputs/labels that the configured metric cannot be computed from; the message names it."""


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    fraction: bool  # a value in [0, 1]: shown as a percentage, a drop is at most 1
    size: int       # summary length


METRICS = {m.name: m for m in (
    Metric("accuracy", True, True, 2), Metric("top_k_accuracy", True, True, 2),
    Metric("auc", True, True, 1 + 2 * AUC_BINS), Metric("mse", False, False, 2), Metric("mae", False, False, 2))}
ACCURACY = "accuracy"  # top-1: what int8_accuracy / fp32_accuracy and max_int8_accuracy_drop_pp mean


def class_labels(spec, target=LABEL):
    """Are the labels class indices (bounded by the model's outputs)? Not for an autoencoder, an AUC's
    0/1 anomaly label or a regression's number."""
    return target == LABEL and spec.eval_metric in (ACCURACY, "top_k_accuracy")


def get(name):
    if name not in METRICS:
        raise MetricError(f"training.eval_metric: {name!r} is not one of {sorted(METRICS)}")
    return METRICS[name]


def _rows(a, n):
    return np.asarray(a, np.float64).reshape(n, -1)


def errors(outputs, reference, kind="mse"):
    """Per-example mean squared (or absolute) error of `outputs` against `reference`."""
    n = len(outputs)
    out, ref = _rows(outputs, n), _rows(reference, n)
    if out.shape != ref.shape:
        raise MetricError(f"{kind}: the model gives {out.shape[1]} values per example, its target has {ref.shape[1]}")
    d = out - ref
    return np.mean(d * d if kind == "mse" else np.abs(d), axis=1)


def scores(outputs, features, target=LABEL):
    """AUC's score per example (higher = more likely positive): the reconstruction error of an
    autoencoder; the one output, or output 1 - output 0 (logits or probabilities), of a binary classifier."""
    if target == FEATURES:
        if isinstance(features, dict):
            raise MetricError("training.target: 'features' needs a one-input model (the features are a dict)")
        return errors(outputs, features)
    out = _rows(outputs, len(outputs))
    if out.shape[1] == 1:
        return out[:, 0]
    if out.shape[1] == 2:
        return out[:, 1] - out[:, 0]
    raise MetricError(f"auc: needs a binary classifier (1 or 2 outputs) or target features; the model has "
                      f"{out.shape[1]} outputs")


def _bins(s):
    t = np.arcsinh(np.asarray(s, np.float64) / _AUC_SCALE)
    return np.clip(((t + _AUC_SPAN) / (2 * _AUC_SPAN) * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)


def predicted(out):
    """Top-1 class per row; a single output is a probability of class 1."""
    return (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)


def summary(spec, outputs, features, labels, target=LABEL):
    """The additive summary of one batch for `spec.eval_metric` (spec: train.TrainingSpec or anything
    with eval_metric, top_k)."""
    name = spec.eval_metric
    n = len(outputs)
    labels = np.asarray(labels).reshape(n)
    if name in ("mse", "mae"):
        if target == FEATURES and isinstance(features, dict):
            scores(outputs, features, target)  # the named error
        return np.array([n, errors(outputs, features if target == FEATURES else labels, name).sum()])
    if name == "auc":
        b = _bins(scores(outputs, features, target))
        pos = labels != 0
        return np.concatenate([[n], np.bincount(b[~pos], minlength=AUC_BINS),
                               np.bincount(b[pos], minlength=AUC_BINS)]).astype(np.float64)
    out = _rows(outputs, n)
    if name == ACCURACY:
        return np.array([n, np.sum(predicted(out) == labels)], np.float64)
    k = min(spec.top_k, out.shape[1])
    top = np.argpartition(-out, k - 1, axis=1)[:, :k] if n else np.zeros((0, k), np.int64)
    return np.array([n, np.sum(np.any(top == labels[:, None], axis=1))], np.float64)


def zeros(name):
    return np.zeros(get(name).size)


def value(name, total):
    """The metric from a summed summary."""
    n = total[0]
    if not n:
        raise MetricError(f"{name}: no examples")
    if name != "auc":
        return float(total[1] / n)
    neg, pos = total[1:1 + AUC_BINS], total[1 + AUC_BINS:]
    if not neg.sum() or not pos.sum():
        raise MetricError(f"auc: the eval split needs both labels (0 and not 0); it has {int(neg.sum())} "
                          f"label-0 and {int(pos.sum())} other examples")
    below = np.cumsum(neg) - neg  # negatives in lower bins
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def compute(spec, outputs, features, labels, target=LABEL):
    return value(spec.eval_metric, summary(spec, outputs, features, labels, target))


def total(spec, batches, predict, target=LABEL):
    """The summed summary of predict(features) over NumPy (features, labels) batches (inputs.DataSpec:
    eval_dataset, batches); streamed, one batch in memory."""
    t = zeros(spec.eval_metric)
    for features, labels in batches:
        t += summary(spec, predict(features), features, labels, target)
    return t


def of_keras(spec, model, batches, target=LABEL):
    """The metric of a Keras model (FP32, or fake-INT8 for a QAT model), batch by batch."""
    return value(spec.eval_metric, total(spec, batches, lambda f: np.asarray(model(f, training=False)), target))


def of_tflite(spec, tflite_bytes, batches, target=LABEL):
    """The metric of an INT8 .tflite (LiteRT interpreter, in this process), batch by batch."""
    from collabopt.core.tflite import flatbuffer
    it = flatbuffer.interpreter(tflite_bytes)
    return value(spec.eval_metric, total(spec, batches, lambda f: flatbuffer.int8_outputs(None, f, interp=it), target))


def drop(name, baseline, value_):
    """How much worse `value_` is than `baseline`, in the metric's units (> 0: worse)."""
    return baseline - value_ if get(name).higher_is_better else value_ - baseline


def fmt(name, v):
    return "-" if v is None else f"{v:.2%}" if get(name).fraction else f"{v:.4g}"


def fmt_drop(name, d, sign=""):
    """A drop in display units: pp for fractions; sign='+' shows the sign."""
    return "-" if d is None else f"{100 * d:{sign}.2f} pp" if get(name).fraction else f"{d:{sign}.4g}"


def title(name, top_k=5):
    return {"accuracy": "top-1 accuracy", "top_k_accuracy": f"top-{top_k} accuracy", "auc": "ROC AUC",
            "mse": "MSE", "mae": "MAE"}[name]


def of_leaf(leaf, prefix="int8_"):
    """(eval metric, value) of a leaf dict; a leaf written before eval_metric existed has accuracy only."""
    name = leaf.get("eval_metric") or ACCURACY
    value_ = leaf.get(prefix + "metric")
    return name, leaf.get(prefix + "accuracy") if value_ is None else value_


def fields(name, values):
    """Stats/leaf fields of metric values {prefix: value}: `<prefix>metric`, and for top-1 accuracy
    also `<prefix>accuracy` (the classifier fields reports, MLMD queries and benchmarks read)."""
    out = {}
    for prefix, v in values.items():
        out[prefix + "metric"] = v
        if name == ACCURACY:
            out[prefix + "accuracy"] = v
    return out
