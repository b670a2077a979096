"""Leaf evaluation with Apache Beam over the shards of an Examples split.

One pass computes the INT8 accuracy of the .tflite (LiteRT interpreter) and the accuracy of the
Keras SavedModel it came from (FP32, or fake-INT8 for a QAT model). The same pipeline runs on the
DirectRunner (in-process or multi-process workers) and on Dataflow/Flink/Spark for big eval sets.
"""
import json
import os
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from collabopt.core import analyze, data, inputs
from collabopt.core.tfenv import tf

RESULT_FILE = "beam_accuracy.json"


class _Predict(beam.DoFn):
    """Per data file, batch by batch (inputs.DataSpec.batches): [examples, INT8 correct, Keras correct]."""

    def __init__(self, tflite_path, saved_model_dir, split, data_spec, batch_size):
        self._tflite_path, self._saved_model_dir = tflite_path, saved_model_dir
        self._split, self._data_spec, self._batch_size = split, data_spec, batch_size

    def setup(self):
        with tf.io.gfile.GFile(self._tflite_path, "rb") as f:
            self._interpreter = analyze.interpreter(f.read())
        self._serve = None
        if self._saved_model_dir:
            # The serving signature: works for FP32 and QAT SavedModels without TFMOT's Keras scopes.
            self._serve = tf.saved_model.load(self._saved_model_dir).signatures["serving_default"]

    def process(self, path):
        for x, y in self._data_spec.batches(self._split, [path], self._batch_size):
            int8 = analyze.int8_predictions(None, x, interp=self._interpreter)
            keras_correct = 0
            if self._serve is not None:
                out = (self._serve(**{k: tf.constant(v) for k, v in x.items()}) if isinstance(x, dict)
                       else self._serve(tf.constant(x)))  # several inputs: by name
                keras_correct = int(np.sum(np.argmax(next(iter(out.values())).numpy(), axis=-1) == y))
            yield np.array([len(y), int(np.sum(int8 == y)), keras_correct], np.int64)


def _write(counts, path):
    n, int8, keras = (int(v) for v in counts)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"examples": n, "int8_correct": int8, "keras_correct": keras}, f)


def beam_args(args=()):
    """Beam pipeline args with a runner: without one, Beam's DirectRunner first tries to download the
    Prism runner binary from the internet, then falls back to the FnApiRunner this picks directly."""
    args = list(args)
    return args if any(a.startswith("--runner") for a in args) else ["--runner=FnApiRunner", *args]


def accuracy(tflite_path, examples_uri, split="eval", *, saved_model_dir=None, feature_key="image",
             label_key="label", feature_shape=data.FASHION_MNIST_SHAPE, make_pipeline=None, batch_size=256,
             data_spec=None):
    """{'examples', 'int8_accuracy', 'keras_accuracy' (None without a SavedModel)} over every
    record of the split, one Beam element per data file. `make_pipeline` returns a beam.Pipeline (a
    TFX executor passes its own, configured by the pipeline's beam_pipeline_args); default: in
    memory, in this process. `data_spec` (inputs.DataSpec, e.g. with a module_file) reads the
    records; default: one built from examples_uri and the keys."""
    files = data.split_files(examples_uri, split)  # ExamplesError names the split if it is missing
    data_spec = data_spec or inputs.DataSpec(examples_uri, feature_key, label_key, tuple(feature_shape))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, RESULT_FILE)
        pipeline = make_pipeline() if make_pipeline else beam.Pipeline(
            options=PipelineOptions(beam_args(["--direct_running_mode=in_memory"])))
        with pipeline as p:
            _ = (p
                 | "Files" >> beam.Create(files)
                 | "Spread" >> beam.Reshuffle()  # files to workers
                 | "Predict" >> beam.ParDo(_Predict(str(tflite_path), saved_model_dir, split, data_spec, batch_size))
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
