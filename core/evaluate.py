"""Leaf evaluation with Apache Beam over the shards of an Examples split.

One pass computes the eval metric (core.metrics) of the INT8 .tflite (LiteRT interpreter) and of
the Keras SavedModel it came from (FP32, or fake-INT8 for a QAT model): each batch yields the
metric's additive summaries, Beam sums them. The same pipeline runs on the DirectRunner (in-process
or multi-process workers) and on Dataflow/Flink/Spark for big eval sets.
"""
import dataclasses
import json
import os
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from collabopt.core import analyze, data, metrics
from collabopt.core.train import TrainingSpec
from collabopt.core.tfenv import tf

RESULT_FILE = "beam_metric.json"


class _Predict(beam.DoFn):
    """Per batch of serialized tf.Examples: (INT8 summary, Keras summary) of the eval metric."""

    def __init__(self, tflite_path, saved_model_dir, split, feature_key, label_key, feature_shape, training):
        self._tflite_path, self._saved_model_dir = tflite_path, saved_model_dir
        self._split, self._keys, self._shape = split, (feature_key, label_key), tuple(feature_shape)
        self._training = training

    def setup(self):
        with tf.io.gfile.GFile(self._tflite_path, "rb") as f:
            self._interpreter = analyze.interpreter(f.read())
        self._serve = None
        if self._saved_model_dir:
            # The serving signature: works for FP32 and QAT SavedModels without TFMOT's Keras scopes.
            self._serve = tf.saved_model.load(self._saved_model_dir).signatures["serving_default"]

    def process(self, batch):
        parse, _, _ = data.example_parser(batch[0], self._split, *self._keys, self._shape)
        x, y = parse(tf.constant(batch))
        x, y = x.numpy().reshape((-1,) + self._shape), y.numpy()
        int8 = metrics.summary(self._training, analyze.int8_outputs(None, x, interp=self._interpreter), x, y)
        keras = metrics.zeros(self._training.eval_metric)
        if self._serve is not None:
            keras = metrics.summary(self._training, next(iter(self._serve(tf.constant(x)).values())).numpy(), x, y)
        yield int8, keras


def _write(totals, path):
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump([t.tolist() for t in totals], f)


def beam_args(args=()):
    """Beam pipeline args with a runner: without one, Beam's DirectRunner first tries to download the
    Prism runner binary from the internet, then falls back to the FnApiRunner this picks directly."""
    args = list(args)
    return args if any(a.startswith("--runner") for a in args) else ["--runner=FnApiRunner", *args]


def metric(tflite_path, examples_uri, split="eval", *, saved_model_dir=None, feature_key="image",
           label_key="label", feature_shape=data.FASHION_MNIST_SHAPE, make_pipeline=None, batch_size=256,
           training=TrainingSpec()):
    """{'examples', 'eval_metric', 'int8_metric', 'keras_metric' (None without a SavedModel)} over every
    record of the split. `make_pipeline` returns a beam.Pipeline (a TFX executor passes its own,
    configured by the pipeline's beam_pipeline_args); default: in memory, in this process."""
    files = data.split_files(examples_uri, split)  # ExamplesError names the split if it is missing
    pattern = os.path.join(os.path.dirname(files[0]), "*")
    name = training.eval_metric
    empty = (metrics.zeros(name), metrics.zeros(name))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, RESULT_FILE)
        pipeline = make_pipeline() if make_pipeline else beam.Pipeline(
            options=PipelineOptions(beam_args(["--direct_running_mode=in_memory"])))
        with pipeline as p:
            _ = (p
                 | "Read" >> beam.io.ReadFromTFRecord(
                     pattern, coder=beam.coders.BytesCoder(),
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP)
                 | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
                 | "Predict" >> beam.ParDo(_Predict(str(tflite_path), saved_model_dir, split, feature_key,
                                                    label_key, feature_shape,
                                                    dataclasses.replace(training, loss_fn=None, metrics_fn=None)))
                 | "Sum" >> beam.CombineGlobally(lambda rows: tuple(map(sum, zip(empty, *rows))))
                 | "Write" >> beam.Map(_write, out))
        with open(out) as f:
            int8, keras = (np.asarray(t) for t in json.load(f))
    n = int(int8[0])
    if not n:
        raise data.ExamplesError(f"Examples split {split!r} has no records ({examples_uri})")
    return {"examples": n, "eval_metric": name, "int8_metric": metrics.value(name, int8),
            "keras_metric": metrics.value(name, keras) if saved_model_dir else None}


def accuracy(tflite_path, examples_uri, split="eval", **kwargs):
    """metric() with top-1 accuracy: {'examples', 'int8_accuracy', 'keras_accuracy'}."""
    r = metric(tflite_path, examples_uri, split, **kwargs, training=TrainingSpec(eval_metric=metrics.ACCURACY))
    return {"examples": r["examples"], "int8_accuracy": r["int8_metric"], "keras_accuracy": r["keras_metric"]}
