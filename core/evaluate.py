"""Leaf evaluation with Apache Beam over the shards of an Examples split.

One pass computes the INT8 accuracy of the .tflite (TFLite interpreter) and the accuracy of the
Keras SavedModel it came from (FP32, or fake-INT8 for a QAT model). The same pipeline runs on the
DirectRunner (in-process or multi-process workers) and on Dataflow/Flink/Spark for big eval sets.
"""
import json
import os
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from collabopt.core import analyze, data
from collabopt.core.tfenv import tf

RESULT_FILE = "beam_accuracy.json"


class _Predict(beam.DoFn):
    """Per batch of serialized tf.Examples: [examples, INT8 correct, Keras correct]."""

    def __init__(self, tflite_path, saved_model_dir, split, feature_key, label_key, feature_shape):
        self._tflite_path, self._saved_model_dir = tflite_path, saved_model_dir
        self._split, self._keys, self._shape = split, (feature_key, label_key), tuple(feature_shape)

    def setup(self):
        with tf.io.gfile.GFile(self._tflite_path, "rb") as f:
            self._interpreter = tf.lite.Interpreter(model_content=f.read())
        self._serve = None
        if self._saved_model_dir:
            # The serving signature: works for FP32 and QAT SavedModels without TFMOT's Keras scopes.
            self._serve = tf.saved_model.load(self._saved_model_dir).signatures["serving_default"]

    def process(self, batch):
        parse, _, _ = data.example_parser(batch[0], self._split, *self._keys, self._shape)
        x, y = parse(tf.constant(batch))
        x, y = x.numpy().reshape((-1,) + self._shape), y.numpy()
        int8 = analyze.int8_predictions(None, x, interpreter=self._interpreter)
        keras_correct = 0
        if self._serve is not None:
            logits = next(iter(self._serve(tf.constant(x)).values())).numpy()
            keras_correct = int(np.sum(np.argmax(logits, axis=-1) == y))
        yield np.array([len(y), int(np.sum(int8 == y)), keras_correct], np.int64)


def _write(counts, path):
    n, int8, keras = (int(v) for v in counts)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"examples": n, "int8_correct": int8, "keras_correct": keras}, f)


def accuracy(tflite_path, examples_uri, split="eval", *, saved_model_dir=None, feature_key="image",
             label_key="label", feature_shape=(28, 28, 1), make_pipeline=None, batch_size=256):
    """{'examples', 'int8_accuracy', 'keras_accuracy' (None without a SavedModel)} over every
    record of the split. `make_pipeline` returns a beam.Pipeline (a TFX executor passes its own,
    configured by the pipeline's beam_pipeline_args); default: the in-memory DirectRunner."""
    files = data.split_files(examples_uri, split)  # ExamplesError names the split if it is missing
    pattern = os.path.join(os.path.dirname(files[0]), "*")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, RESULT_FILE)
        pipeline = make_pipeline() if make_pipeline else beam.Pipeline(
            options=PipelineOptions(["--direct_running_mode=in_memory"]))
        with pipeline as p:
            _ = (p
                 | "Read" >> beam.io.ReadFromTFRecord(
                     pattern, coder=beam.coders.BytesCoder(),
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP)
                 | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
                 | "Predict" >> beam.ParDo(_Predict(str(tflite_path), saved_model_dir, split, feature_key,
                                                    label_key, feature_shape))
                 | "Sum" >> beam.CombineGlobally(lambda rows: np.sum(list(rows), axis=0)
                                                 if rows else np.zeros(3, np.int64))
                 | "Write" >> beam.Map(_write, out))
        with open(out) as f:
            counts = json.load(f)
    n = counts["examples"]
    if not n:
        raise data.ExamplesError(f"Examples split {split!r} has no records ({examples_uri})")
    return {"examples": n, "int8_accuracy": counts["int8_correct"] / n,
            "keras_accuracy": counts["keras_correct"] / n if saved_model_dir else None}


# Requirement names (config `requirements:`); None or absent: not checked.
REQUIREMENTS = ("max_int8_accuracy_drop_pp", "max_gzip_bytes", "max_npu_inference_time_s", "npu_target")


def gate(leaf, requirements, baseline_int8_accuracy):
    """Why `leaf` misses the user's requirements or lost what its path promised; [] = blessed."""
    req = requirements or {}
    reasons = []
    drop = req.get("max_int8_accuracy_drop_pp")
    if drop is not None:
        lost = round(100.0 * (baseline_int8_accuracy - leaf["int8_accuracy"]), 9)  # at the limit passes
        if lost > drop:
            reasons.append(f"INT8 accuracy {leaf['int8_accuracy']:.2%} is {lost:.2f} pp below the "
                           f"baseline's {baseline_int8_accuracy:.2%} (max drop {drop} pp)")
    max_gzip = req.get("max_gzip_bytes")
    if max_gzip is not None and leaf["gzip_bytes"] > max_gzip:
        reasons.append(f"gzip size {leaf['gzip_bytes']:,} B > max {max_gzip:,} B")
    max_time = req.get("max_npu_inference_time_s")
    if max_time is not None:
        target = req.get("npu_target") or next(iter(leaf["npu"]), None)
        est = leaf["npu"].get(target)
        if est is None:
            reasons.append(f"no NPU estimate for {target!r} to check max_npu_inference_time_s")
        elif est["inference_time_s"] > max_time:
            reasons.append(f"{target} inference time {est['inference_time_s'] * 1e3:.3f} ms > max "
                           f"{max_time * 1e3:.3f} ms")
    if leaf.get("preservation_failures"):
        reasons.append("preservation: " + "; ".join(leaf["preservation_failures"]))
    return reasons


def not_worse(leaf, previous, requirements=None):
    """Retraining: why `leaf` is worse than the leaf deployed now (`previous`); [] = not worse.
    Compared: INT8 accuracy, gzip bytes, and the NPU time of the requirement's target (or the
    first target both were estimated on)."""
    reasons = []
    tag = f"worse than deployed version {previous.get('version', '?')}"
    if leaf["int8_accuracy"] < previous["int8_accuracy"]:
        reasons.append(f"{tag}: INT8 accuracy {leaf['int8_accuracy']:.2%} < {previous['int8_accuracy']:.2%}")
    if leaf["gzip_bytes"] > previous["gzip_bytes"]:
        reasons.append(f"{tag}: gzip size {leaf['gzip_bytes']:,} B > {previous['gzip_bytes']:,} B")
    target = (requirements or {}).get("npu_target") or next(
        (t for t in leaf["npu"] if t in previous.get("npu", {})), None)
    if target and target in leaf["npu"] and target in previous.get("npu", {}):
        new, old = leaf["npu"][target]["inference_time_s"], previous["npu"][target]["inference_time_s"]
        if new > old:
            reasons.append(f"{tag}: {target} inference time {new * 1e3:.4f} ms > {old * 1e3:.4f} ms")
    return reasons
