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
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from collabopt.core.tflite import flatbuffer
from collabopt.core.data import examples_io, inputs
from collabopt.core.evaluation import metrics
from collabopt.core.model.train import TrainingSpec
from collabopt.core.tfenv import tf

RESULT_FILE = "beam_metric.json"


class _Predict(beam.DoFn):
    """Per data file, batch by batch (inputs.DataSpec.batches): (INT8 summary, Keras summary) of the
    eval metric (core.metrics)."""

    def __init__(self, tflite_path, saved_model_dir, split, data_spec, batch_size, training):
        self._tflite_path, self._saved_model_dir = tflite_path, saved_model_dir
        self._split, self._data_spec, self._batch_size = split, data_spec, batch_size
        self._training = training

    def setup(self):
        with tf.io.gfile.GFile(self._tflite_path, "rb") as f:
            self._interpreter = flatbuffer.interpreter(f.read())
        self._serve = None
        if self._saved_model_dir:
            # The serving signature: works for FP32 and QAT SavedModels without TFMOT's Keras scopes.
            self._serve = tf.saved_model.load(self._saved_model_dir).signatures["serving_default"]

    def process(self, path):
        spec, target = self._training, self._data_spec.target
        for x, y in self._data_spec.batches(self._split, [path], self._batch_size):
            int8 = metrics.summary(spec, flatbuffer.int8_outputs(None, x, interp=self._interpreter), x, y, target)
            keras = metrics.zeros(spec.eval_metric)
            if self._serve is not None:
                out = (self._serve(**{k: tf.constant(v) for k, v in x.items()}) if isinstance(x, dict)
                       else self._serve(tf.constant(x)))  # several inputs: by name
                keras = metrics.summary(spec, next(iter(out.values())).numpy(), x, y, target)
            yield int8, keras


def _write(totals, path):
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump([t.tolist() for t in totals], f)


def beam_args(args=()):
    """Beam pipeline args with a runner: without one, Beam's DirectRunner first tries to download the
    Prism runner binary from the internet, then falls back to the FnApiRunner this picks directly."""
    args = list(args)
    return args if any(a.startswith("--runner") for a in args) else ["--runner=FnApiRunner", *args]


# Runners whose workers are this process or its children, in this Python environment.
IN_PROCESS_RUNNERS = ("directrunner", "fnapirunner", "bundlebaseddirectrunner", "switchingdirectrunner")


def runs_in_process(args):
    """True when the Beam args pick a runner whose workers already have this environment (no runner
    counts: beam_args picks the FnApiRunner), so nothing needs packaging for them."""
    if not all(isinstance(a, str) for a in args):  # placeholders: resolved later, maybe to a remote runner
        return False
    runner = (PipelineOptions(list(args)).view_as(StandardOptions).runner or "FnApiRunner").rsplit(".", 1)[-1].lower()
    return (runner if runner.endswith("runner") else runner + "runner") in IN_PROCESS_RUNNERS


def metric(tflite_path, examples_uri, split="eval", *, saved_model_dir=None, feature_key="image",
           label_key="label", feature_shape=examples_io.FASHION_MNIST_SHAPE, make_pipeline=None, batch_size=256,
           data_spec=None, training=TrainingSpec()):
    """{'examples', 'eval_metric', 'int8_metric', 'keras_metric' (None without a SavedModel)} over every
    record of the split, one Beam element per data file. `make_pipeline` returns a beam.Pipeline (a
    TFX executor passes its own, configured by the pipeline's beam_pipeline_args); default: in
    memory, in this process. `data_spec` (inputs.DataSpec, e.g. with a module_file or target) reads
    the records; default: one built from examples_uri and the keys."""
    files = examples_io.split_files(examples_uri, split)  # ExamplesError names the split if it is missing
    data_spec = data_spec or inputs.DataSpec(examples_uri, feature_key, label_key, tuple(feature_shape))
    name = training.eval_metric
    empty = (metrics.zeros(name), metrics.zeros(name))
    training = dataclasses.replace(training, loss_fn=None, metrics_fn=None)  # hooks: fine-tuning's, not pickled
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, RESULT_FILE)
        pipeline = make_pipeline() if make_pipeline else beam.Pipeline(
            options=PipelineOptions(beam_args(["--direct_running_mode=in_memory"])))
        with pipeline as p:
            _ = (p
                 | "Files" >> beam.Create(files)
                 | "Spread" >> beam.Reshuffle()  # files to workers
                 | "Predict" >> beam.ParDo(_Predict(str(tflite_path), saved_model_dir, split, data_spec, batch_size,
                                                    training))
                 | "Sum" >> beam.CombineGlobally(lambda rows: tuple(map(sum, zip(empty, *rows))))
                 | "Write" >> beam.Map(_write, out))
        with open(out) as f:
            int8, keras = (np.asarray(t) for t in json.load(f))
    n = int(int8[0])
    if not n:
        raise examples_io.ExamplesError(f"Examples split {split!r} has no records ({examples_uri})")
    return {"examples": n, "eval_metric": name, "int8_metric": metrics.value(name, int8),
            "keras_metric": metrics.value(name, keras) if saved_model_dir else None}


def accuracy(tflite_path, examples_uri, split="eval", **kwargs):
    """metric() with top-1 accuracy: {'examples', 'int8_accuracy', 'keras_accuracy'}."""
    r = metric(tflite_path, examples_uri, split, **kwargs, training=TrainingSpec(eval_metric=metrics.ACCURACY))
    return {"examples": r["examples"], "int8_accuracy": r["int8_metric"], "keras_accuracy": r["keras_metric"]}
