"""One function per deployment-tree stage: paths and plain parameters in, files and metrics out.

The TFX executors only decode artifacts and call these; benchmarks call them directly, so a
pipeline run and a plain script do exactly the same work.
"""
import dataclasses
import json
import logging
import os
import shutil

import numpy as np

from collabopt.core import (analyze, checks, convert, data, deploy, gates, kernel_trace, keras_io, layer_support, optimize,
                            train, vela)
from collabopt.core.artifact_files import (EXCLUDED_LAYERS, INT8_STAGE, KERNELS_FILE, LEAF_FILE, LEAVES_FILE, LOG_DIR, MODEL_DIR, REPORT_FILE,
                                           STATS_FILE, TFLITE_FILE, excluded_layers, promises, read_leaf,
                                           write_json)

log = logging.getLogger("collabopt")

@dataclasses.dataclass
class DataSpec:
    """Where the tf.Examples are and how to read features/labels from them."""
    examples_uri: str
    feature_key: str = "image"
    label_key: str = "label"
    feature_shape: tuple = data.FASHION_MNIST_SHAPE
    train_split: str = "train"
    eval_split: str = "eval"
    train_limit: int = 0  # 0: the whole split
    eval_limit: int = 0

    def _read(self, split, limit):
        return data.read_examples(self.examples_uri, split, feature_key=self.feature_key,
                                  label_key=self.label_key, feature_shape=tuple(self.feature_shape),
                                  limit=limit or None)

    def train_cap(self, limit=0):
        """How many train records train(limit) reads (0: all)."""
        return min(x for x in (self.train_limit, limit) if x) if (self.train_limit or limit) else 0

    def train(self, limit=0):
        """The train split; `limit` caps it further (e.g. representative samples only)."""
        return self._read(self.train_split, self.train_cap(limit))

    def eval(self):
        return self._read(self.eval_split, self.eval_limit)


@dataclasses.dataclass
class FitSpec:
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-4
    seed: int = 0


def keras_metrics(model, x, y):
    """Accuracy plus what the Keras kernels hold (sparsity, distinct values)."""
    kernels = [w for layer, w in optimize._kernels(model)]  # noqa: SLF001
    sizes = [w.size for w in kernels]
    d = optimize.describe(model)
    return {
        "accuracy": train.accuracy(model, x, y),
        "sparsity": float(np.average([np.mean(w == 0) for w in kernels], weights=sizes)),
        "num_params": int(model.count_params()),
        "is_sparse": d["sparse"], "is_clustered": d["clustered"],
    }


def _load(model_path):
    """The input model and its kernel trace, taken before any stage touches it: TFMOT's wrappers
    prune/cluster the input model's variables in place."""
    model = keras_io.load_model(model_path)
    return model, kernel_trace.history(model_path, model)


def _excluded(model_path, technique, left_out):
    """stats.json's record of the layers each technique so far left out: {technique: {layer: why}}."""
    for layer, why in left_out.items():
        log.info("[%s] %s left out: %s", technique, layer, why)
    return {EXCLUDED_LAYERS: {**excluded_layers(model_path), technique: dict(left_out)}}


def _save(model, out_dir, metrics, *, trace=(None, {}), stage=None):
    """SavedModel + stats.json + the kernel trace (the input's, then this stage's kernel)."""
    keras_io.save_model(model, os.path.join(out_dir, MODEL_DIR))
    write_json(os.path.join(out_dir, STATS_FILE), metrics)
    layer, history = trace
    if stage:
        layer, w = kernel_trace.sample_kernel(model)
        history = {**history, stage: w}
    kernel_trace.save(out_dir, layer, history)
    return metrics


def train_baseline(data_spec, out_dir, *, width=64, blocks=4, num_classes=10, fit=FitSpec(epochs=3, learning_rate=1e-3)):
    """Train the DS-CNN-style baseline on the Examples; SavedModel under out_dir/Format-Serving."""
    checks.stage_inputs(data_spec, num_classes=num_classes)  # named errors before training
    x, y = data_spec.train()
    xe, ye = data_spec.eval()
    model = train.ds_cnn(tuple(data_spec.feature_shape), num_classes, width=width, blocks=blocks)
    train.fit(model, x, y, epochs=fit.epochs, batch_size=fit.batch_size, learning_rate=fit.learning_rate,
              stage="baseline", log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed)
    return _save(model, out_dir, keras_metrics(model, xe, ye), stage="baseline")


def prune(model_path, data_spec, out_dir, *, target_sparsity=0.5, schedule="polynomial", frequency=100,
          m_by_n=None, exclude_layers=(), strict=False, fit=FitSpec(epochs=2), layer_sparsity=None):
    checks.stage_inputs(data_spec, model_path)
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "prune", exclude_layers, strict)  # before any fine-tuning
    x, y = data_spec.train()
    xe, ye = data_spec.eval()
    pruned = optimize.prune(model, x, y, target_sparsity=target_sparsity, schedule=schedule,
                            frequency=frequency, m_by_n=m_by_n, epochs=fit.epochs,
                            batch_size=fit.batch_size, learning_rate=fit.learning_rate,
                            log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, left_out=left_out,
                            layer_sparsity=layer_sparsity)
    target = m_by_n[0] / m_by_n[1] if m_by_n else None if layer_sparsity else target_sparsity  # (M, N): M zeros per N
    return _save(pruned, out_dir, {**keras_metrics(pruned, xe, ye), "technique": "prune",
                                   "promises": {**promises(model_path), "target_sparsity": target,
                                                **({"layer_sparsity": dict(layer_sparsity)} if layer_sparsity else {})},
                                   **_excluded(model_path, "prune", left_out)},
                 trace=trace, stage="pruned")


def cluster(model_path, data_spec, out_dir, *, number_of_clusters=8, centroid_init="kmeans++",
            preserve_sparsity=True, per_channel=False, exclude_layers=(), strict=False, fit=FitSpec(epochs=1),
            layer_clusters=None):
    checks.stage_inputs(data_spec, model_path)
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "cluster", exclude_layers, strict)
    x, y = data_spec.train()
    xe, ye = data_spec.eval()
    clustered = optimize.cluster(model, x, y, number_of_clusters=number_of_clusters,
                                 centroid_init=centroid_init, preserve_sparsity=preserve_sparsity,
                                 per_channel=per_channel, epochs=fit.epochs, batch_size=fit.batch_size,
                                 learning_rate=fit.learning_rate,
                                 log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, left_out=left_out,
                                 layer_clusters=layer_clusters)
    m = keras_metrics(clustered, xe, ye)
    kept = promises(model_path) if preserve_sparsity else {}
    return _save(clustered, out_dir, {**m, "technique": "cluster", "promises": {
        **kept, "number_of_clusters": None if layer_clusters else number_of_clusters,
        **({"layer_clusters": dict(layer_clusters)} if layer_clusters else {}), "per_channel": per_channel},
        **_excluded(model_path, "cluster", left_out)},
        trace=trace, stage="clustered")


def preserving_qat(model_path, data_spec, out_dir, *, scheme="auto", shared_centroids=True, exclude_layers=(),
                   strict=False, fit=FitSpec(epochs=1, learning_rate=1e-5)):
    """QAT with the scheme that preserves what the model has; saves the QAT SavedModel."""
    checks.stage_inputs(data_spec, model_path)
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "qat", exclude_layers, strict)
    x, y = data_spec.train()
    xe, ye = data_spec.eval()
    per_channel = None if shared_centroids else True
    qat_model, scheme = optimize.preserving_qat(
        model, x, y, scheme=scheme, epochs=fit.epochs, batch_size=fit.batch_size,
        learning_rate=fit.learning_rate, log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed,
        per_channel_clusters=per_channel, left_out=left_out)
    m = {"accuracy": train.accuracy(qat_model, xe, ye), "scheme": scheme, "technique": scheme,
         "num_params": int(model.count_params()), "promises": promises(model_path),
         **_excluded(model_path, "qat", left_out)}
    # The fake-quant kernel is not the deployed one: the converter adds the INT8 kernel instead.
    return _save(qat_model, out_dir, m, trace=trace)


def is_qat_saved_model(saved_model_dir):
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        return b"FakeQuantWithMinMaxVars" in f.read()


def to_tflite(model_path, data_spec, out_dir, *, representative_samples=200, evaluate=True):
    """Full-INT8 .tflite (QAT ranges if the model is a QAT model, else PTQ) and its analysis."""
    checks.stage_inputs(data_spec, model_path, train=representative_samples, evaluation=evaluate)
    src = keras_io.saved_model_dir(model_path)
    x, _ = data_spec.train(limit=representative_samples)  # only what calibration uses
    # The converter asks for representative data even for QAT SavedModels (TF 2.21 checks before it
    # has read the graph); with fake-quant nodes present it uses their ranges and ignores the data.
    rep = convert.representative(x, representative_samples)
    qat = is_qat_saved_model(src)
    tflite = convert.saved_model_to_int8(src, rep)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, TFLITE_FILE), "wb") as f:
        f.write(tflite)
    stats = analyze.summarize(tflite)
    stats["mode"] = "qat" if qat else "ptq"
    stats["promises"], stats[EXCLUDED_LAYERS] = promises(model_path), excluded_layers(model_path)
    stats["preservation_failures"] = gates.preservation(stats["layers"], stats["promises"], stats[EXCLUDED_LAYERS])
    layer, history = kernel_trace.history(model_path, kernel_trace.model_without_history(model_path))
    if layer:
        w = analyze.kernel_codes(tflite, layer)
        if w is not None:
            history = {**history, INT8_STAGE: w}
        kernel_trace.save(out_dir, layer, history)
    if evaluate:
        xe, ye = data_spec.eval()
        stats["int8_accuracy"] = analyze.int8_accuracy(tflite, xe, ye)
    write_json(os.path.join(out_dir, STATS_FILE), stats)
    return stats


def compile_npu(tflite_path, out_dir, *, accelerator_configs=("ethos-u55-128",), system_config=None,
                memory_mode=None):
    """Vela for each target; per-target numbers under out_dir/<target>/."""
    vela.check_int8(tflite_path)
    results = {}
    for acc in accelerator_configs:
        results[acc] = vela.compile_for_npu(tflite_path, os.path.join(out_dir, acc), acc,
                                            system_config=system_config, memory_mode=memory_mode)
    write_json(os.path.join(out_dir, STATS_FILE), results)
    return results


NPU_KEYS = ("npu_cycles", "inference_time_s", "flash_bytes", "dram_bytes", "sram_bytes", "encoded_weights_bytes",
            "npu_op_pct", "npu_ops", "cpu_ops", "weights_area", "weights_area_bytes")


def read_npu(npu_dir):
    """{target: NPU_KEYS numbers} of a compile_npu output folder ({} without one)."""
    if not npu_dir:
        return {}
    with open(os.path.join(str(npu_dir), STATS_FILE)) as f:
        return {t: {k: est[k] for k in NPU_KEYS} for t, est in json.load(f).items()}


def evaluate_leaf(path_name, tflite_dir, model_path, data_spec, out_dir, *, npu_dir=None, requirements=None,
                  baseline_dir=None, make_pipeline=None, push_destination=None):
    """Evaluate one deployment-tree leaf the same way as every other: accuracies with Beam over the
    eval split, the flatbuffer's size and per-layer analysis (from the converter's stats.json), the
    Vela numbers of its compile_npu output (npu_dir: compiled once, judged here), then the
    requirement and preservation gates. Writes leaf.json (+ the
    kernel history) to out_dir; returns the leaf dict with 'blessed' and 'reasons'."""
    from collabopt.core import evaluate  # Beam only where it is used

    checks.stage_inputs(data_spec, model_path, train=False, evaluation="all")  # Beam reads every record
    with open(os.path.join(str(tflite_dir), STATS_FILE)) as f:
        conv = json.load(f)
    tflite_path = os.path.join(str(tflite_dir), TFLITE_FILE)
    acc = evaluate.accuracy(
        tflite_path, data_spec.examples_uri, data_spec.eval_split,
        saved_model_dir=keras_io.saved_model_dir(model_path) if model_path else None,
        feature_key=data_spec.feature_key, label_key=data_spec.label_key,
        feature_shape=data_spec.feature_shape, make_pipeline=make_pipeline)
    os.makedirs(out_dir, exist_ok=True)
    npu = read_npu(npu_dir)
    leaf = {
        "path": path_name,
        "mode": conv.get("mode"),  # ptq | qat
        "fp32_accuracy": acc["keras_accuracy"],  # FP32 model, or fake-INT8 for a QAT model
        "int8_accuracy": acc["int8_accuracy"],
        "eval_examples": acc["examples"],
        **{k: conv[k] for k in ("tflite_bytes", "gzip_bytes", "saving_pct", "sparsity",
                                "max_unique_per_channel", "max_unique_per_tensor")},
        "promises": conv.get("promises", {}),
        "preservation_failures": conv.get("preservation_failures", []),
        EXCLUDED_LAYERS: conv.get(EXCLUDED_LAYERS, {}),
        "layers": conv.get("layers", []),
        "npu": npu,
    }
    baseline = read_leaf(baseline_dir) if baseline_dir else leaf
    leaf["baseline_int8_accuracy"] = baseline["int8_accuracy"]
    leaf["int8_accuracy_drop_pp"] = 100.0 * (baseline["int8_accuracy"] - leaf["int8_accuracy"])
    leaf["requirements"] = dict(requirements or {})
    leaf["reasons"] = gates.gate(leaf, requirements, baseline["int8_accuracy"])
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


def write_report(evaluation_dirs, out_dir, *, title="collabopt optimization report", meta=None, publish_dir=None):
    """The run's HTML report from its leaf evaluations ({path: evaluation dir}); also copied to
    publish_dir (e.g. next to the pipeline root). Returns the leaf dicts."""
    from collabopt.core import report_page  # matplotlib only where it is used

    leaves, kernels = [], {}
    for path, d in evaluation_dirs.items():
        leaves.append(read_leaf(d))
        layer, history = kernel_trace.history(d)
        if layer:
            kernels[path] = (layer, history)
    page = report_page.render(leaves, kernels, title=title, meta=meta)
    os.makedirs(out_dir, exist_ok=True)
    for folder in filter(None, (out_dir, publish_dir)):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, REPORT_FILE), "w") as f:
            f.write(page)
    write_json(os.path.join(out_dir, LEAVES_FILE), [{k: v for k, v in l.items() if k != "layers"} for l in leaves])
    return leaves


