"""Evaluate one deployment-tree leaf: the Beam metrics, the flatbuffer's sizes, its NPU numbers and the
gates; the leaf.json every reader (report, MLMD reader, search, push) takes its numbers from."""
import contextlib
import json
import logging
import os
import shutil

from collabopt.core.data import checks
from collabopt.core import deploy
from collabopt.core.evaluation import gates, metrics
from collabopt.core.firmware import device_check, tflm
from collabopt.core.model import keras_io
from collabopt.core.npu import per_layer
from collabopt.core.artifact_files import (EXCLUDED_LAYERS, KERNELS_FILE, LEAF_FILE, STATS_FILE, TFLITE_FILE, read_leaf,
                                           write_json)
from collabopt.core.model.train import TrainingSpec

log = logging.getLogger("collabopt")

NPU_KEYS = ("npu_cycles", "inference_time_s", "flash_bytes", "dram_bytes", "sram_bytes", "encoded_weights_bytes",
            "npu_op_pct", "npu_ops", "cpu_ops", "weights_area", "weights_area_bytes", per_layer.PER_LAYER,
            per_layer.CPU_OPERATORS)


def read_npu(npu_dir):
    """{target: NPU_KEYS numbers} of a compile_npu output folder ({} without one)."""
    if not npu_dir:
        return {}
    with open(os.path.join(str(npu_dir), STATS_FILE)) as f:
        # .get: a folder compiled before the per-layer view has None there
        return {t: {k: est.get(k) for k in NPU_KEYS} for t, est in json.load(f).items()}


def evaluate_leaf(path_name, tflite_dir, model_path, data_spec, out_dir, *, npu_dir=None, requirements=None,
                  baseline_dir=None, make_pipeline=None, push_destination=None, training=TrainingSpec(),
                  tflm_examples=tflm.CHECK_EXAMPLES):
    """Evaluate one deployment-tree leaf the same way as every other: the eval metric
    (training.eval_metric, core.metrics) of the FP32 and INT8 models with Beam over the eval split,
    the flatbuffer's size and per-layer analysis (from the converter's stats.json), the Vela numbers
    of its compile_npu output (npu_dir: compiled once, judged here), TFLM's answers on the first
    `tflm_examples` eval examples (config: tflm.check_examples) and its tensor arena (core.firmware.device_check), then the requirement and
    preservation gates. Writes leaf.json (+ the
    kernel history) to out_dir; returns the leaf dict with 'blessed' and 'reasons'."""
    from collabopt.core.evaluation import beam_eval  # Beam only where it is used

    checks.stage_inputs(data_spec, model_path, train=False, evaluation="all",
                        classes=metrics.class_labels(training, data_spec.target))  # Beam reads every record
    with open(os.path.join(str(tflite_dir), STATS_FILE)) as f:
        conv = json.load(f)
    tflite_path = os.path.join(str(tflite_dir), TFLITE_FILE)
    with (keras_io.saved_model(model_path) if model_path else contextlib.nullcontext()) as src:  # .keras/.h5: a temporary one
        m = beam_eval.metric(tflite_path, data_spec.examples_uri, data_spec.eval_split, saved_model_dir=src,
                            make_pipeline=make_pipeline, data_spec=data_spec, training=training)
    with open(tflite_path, "rb") as f:
        device = device_check.leaf_numbers(f.read(), data_spec, training, tflm_examples)  # TFLM: a few examples, the arena
    os.makedirs(out_dir, exist_ok=True)
    npu = read_npu(npu_dir)
    leaf = {
        "path": path_name,
        "mode": conv.get("mode"),  # ptq | qat
        "eval_metric": training.eval_metric, "top_k": training.top_k,
        # fp32: the FP32 model, or fake-INT8 for a QAT model; *_accuracy too for top-1 accuracy
        **metrics.fields(training.eval_metric, {"fp32_": m["keras_metric"], "int8_": m["int8_metric"]}),
        "eval_examples": m["examples"],
        **{k: conv[k] for k in ("tflite_bytes", "gzip_bytes", "saving_pct", "sparsity",
                                "max_unique_per_channel", "max_unique_per_tensor")},
        "promises": conv.get("promises", {}),
        "preservation_failures": conv.get("preservation_failures", []),
        EXCLUDED_LAYERS: conv.get(EXCLUDED_LAYERS, {}),
        "layers": conv.get("layers", []),
        "npu": npu,
        **device,
    }
    base_metric, base = metrics.of_leaf(read_leaf(baseline_dir) if baseline_dir else leaf)
    if base_metric != training.eval_metric:
        raise ValueError(f"baseline leaf {baseline_dir}: measured by {base_metric}, "
                         f"this leaf by {training.eval_metric}")
    leaf["baseline_int8_metric"] = base
    leaf["metric_drop"] = metrics.drop(training.eval_metric, base, leaf["int8_metric"])
    if training.eval_metric == metrics.ACCURACY:
        leaf["baseline_int8_accuracy"] = base
        leaf["int8_accuracy_drop_pp"] = 100.0 * leaf["metric_drop"]
    leaf["requirements"] = dict(requirements or {})
    leaf["reasons"] = gates.gate(leaf, requirements, base)
    previous = deploy.last_pushed(push_destination, path_name) if push_destination else None
    if previous:  # retraining: bless only what is not worse than the leaf deployed now
        leaf["previous_version"] = previous["version"]
        leaf["reasons"] += gates.not_worse(leaf, previous, requirements)
    leaf["blessed"] = not leaf["reasons"]
    kernels = os.path.join(str(tflite_dir), KERNELS_FILE)
    if os.path.isfile(kernels):
        shutil.copy(kernels, os.path.join(out_dir, KERNELS_FILE))
    write_json(os.path.join(out_dir, LEAF_FILE), leaf)
    for reason in leaf["reasons"]:
        log.info("%s not blessed: %s", path_name, reason)
    return leaf
