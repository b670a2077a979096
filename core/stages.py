"""One function per deployment-tree stage: paths and plain parameters in, files and metrics out.

The TFX executors only decode artifacts and call these; benchmarks call them directly, so a
pipeline run and a plain script do exactly the same work.
"""
import dataclasses
import logging
import os

import numpy as np

from collabopt.schemas.defaults import DEFAULTS, FIT_KEYS
from collabopt.core import isolation
from collabopt.core.tflite import convert, flatbuffer
from collabopt.core.data import checks
from collabopt.core.evaluation import gates, metrics
from collabopt.core.report import kernel_trace
from collabopt.core.model import baseline, keras_io, train
from collabopt.core.techniques import cluster_counts, layer_support, optimize, recurrent, rewrite
from collabopt.core.npu import per_layer, vela
from collabopt.core.data.inputs import DataSpec  # noqa: F401 (stages.DataSpec for callers)
from collabopt.core.artifact_files import (CLAMPED_CLUSTERS, EXCLUDED_LAYERS, INT8_STAGE, LOG_DIR, MODEL_DIR,
                                           STATS_FILE, TFLITE_FILE, excluded_layers, promises, write_json)

log = logging.getLogger("collabopt")
BASELINE, PRUNE, THIN, CLUSTER, QAT, CONVERT = (DEFAULTS[s] for s in ("baseline", "prune", "thin", "cluster", "qat",
                                                                      "convert"))
VELA_SAMPLES = 32  # calibration rows of the INT8 models Vela costs while widths are chosen (cycles ignore values)


@dataclasses.dataclass
class FitSpec:
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-4
    seed: int = 0


def fit_defaults(section):
    """The fine-tuning of a config section when the config says nothing (schemas/defaults.py)."""
    return FitSpec(**{k: DEFAULTS[section][k] for k in FIT_KEYS})


def keras_metrics(model, data_spec, training=train.TrainingSpec()):
    """The eval metric (core.metrics) plus what the Keras kernels hold (sparsity, distinct values)."""
    kernels = [w for layer, w in optimize._kernels(model)]  # noqa: SLF001
    sizes = [w.size for w in kernels]
    d = optimize.describe(model)
    return {
        **_metric(model, data_spec, training),
        "sparsity": float(np.average([np.mean(w == 0) for w in kernels], weights=sizes)),
        "num_params": int(model.count_params()),
        "is_sparse": d["sparse"], "is_clustered": d["clustered"],
    }


def _metric(model, data_spec, training):
    """The eval metric of a Keras model on the eval split, batch by batch: {'eval_metric', 'metric'
    (and 'accuracy' for top-1)}."""
    value = metrics.of_keras(training, model, data_spec.eval_dataset().as_numpy_iterator(), data_spec.target)
    return {"eval_metric": training.eval_metric, **metrics.fields(training.eval_metric, {"": value})}


def _train(data_spec, fit):
    """The fine-tuning data: streamed, shuffled train batches."""
    return data_spec.train_dataset(fit.batch_size, seed=fit.seed)


def _load(model_path):
    """The input model and its kernel trace, taken before any stage touches it: TFMOT's wrappers
    prune/cluster the input model's variables in place. The 1D and separable convolutions are
    rewritten to the Conv2D/DepthwiseConv2D they convert to (`rewrite`): TFMOT's QAT has no config
    for them, so QAT left them out and the preserving schemes lost their zeros and clusters."""
    model = keras_io.load_model(model_path)
    trace = kernel_trace.history(model_path, model)
    model, done, skipped = rewrite.rewrite(model)  # Conv1D, SeparableConv2D: as Conv2D for every technique
    model, unrolled, rolled = recurrent.unroll(model)  # LSTM/GRU: a loop the converter cannot make static
    for layer, what in {**done, **skipped, **unrolled, **rolled}.items():
        log.info("[rewrite] %s: %s", layer, what)
    return model, trace


def _excluded(model_path, technique, left_out):
    """stats.json's record of the layers each technique so far left out: {technique: {layer: why}}."""
    for layer, why in left_out.items():
        log.info("[%s] %s left out: %s", technique, layer, why)
    return {EXCLUDED_LAYERS: {**excluded_layers(model_path), technique: dict(left_out)}}


def _save(model, out_dir, metrics, *, trace=(None, {}), stage=None):
    """SavedModel + stats.json + the kernel trace (the input's, then this stage's kernel)."""
    keras_io.save_model(model, os.path.join(out_dir, MODEL_DIR), traces=False)  # built-in layers (+ TFMOT's QAT wrappers)
    write_json(os.path.join(out_dir, STATS_FILE), metrics)
    layer, history = trace
    if stage:
        layer, w = kernel_trace.sample_kernel(model)
        history = {**history, stage: w}
    kernel_trace.save(out_dir, layer, history)
    return metrics


def train_baseline(data_spec, out_dir, *, width=BASELINE["width"], blocks=BASELINE["blocks"],
                   num_classes=BASELINE["num_classes"], fit=fit_defaults("baseline"), training=train.TrainingSpec()):
    """Train the DS-CNN-style baseline on the Examples; SavedModel under out_dir/Format-Serving."""
    checks.stage_inputs(data_spec, num_classes=num_classes)  # named errors before training
    model = baseline.ds_cnn(tuple(data_spec.feature_shape), num_classes, width=width, blocks=blocks)
    train.fit(model, _train(data_spec, fit), epochs=fit.epochs, learning_rate=fit.learning_rate,
              stage="baseline", log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, training=training)
    return _save(model, out_dir, keras_metrics(model, data_spec, training), stage="baseline")


def prune(model_path, data_spec, out_dir, *, target_sparsity=PRUNE["target_sparsity"], schedule=PRUNE["schedule"],
          frequency=PRUNE["frequency"], m_by_n=PRUNE["m_by_n"], exclude_layers=PRUNE["exclude_layers"],
          strict=PRUNE["strict"], fit=fit_defaults("prune"), training=train.TrainingSpec(),
          layer_sparsity=PRUNE["layer_sparsity"]):
    checks.stage_inputs(data_spec, model_path, classes=metrics.class_labels(training, data_spec.target))
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "prune", exclude_layers, strict)  # before any fine-tuning
    pruned = optimize.prune(model, _train(data_spec, fit), target_sparsity=target_sparsity, schedule=schedule,
                            frequency=frequency, m_by_n=m_by_n, epochs=fit.epochs,
                            batch_size=fit.batch_size, learning_rate=fit.learning_rate,
                            log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, left_out=left_out,
                            training=training, layer_sparsity=layer_sparsity)
    target = m_by_n[0] / m_by_n[1] if m_by_n else None if layer_sparsity else target_sparsity  # (M, N): M zeros per N
    return _save(pruned, out_dir, {**keras_metrics(pruned, data_spec, training), "technique": "prune",
                                   "promises": {**promises(model_path), "target_sparsity": target,
                                                **({"layer_sparsity": dict(layer_sparsity)} if layer_sparsity else {}),
                                                **({"m_by_n": list(m_by_n)} if m_by_n else {})},
                                   **_excluded(model_path, "prune", left_out)},
                 trace=trace, stage="pruned")


def thin(model_path, data_spec, out_dir, *, keep_ratio=THIN["keep_ratio"], target_cycles=THIN["target_cycles"],
         npu_target=THIN["npu_target"], score=THIN["score"], min_keep=THIN["min_keep"],
         exclude_layers=THIN["exclude_layers"], strict=THIN["strict"], distill=THIN["distill"],
         distill_temperature=THIN["distill_temperature"], fit=fit_defaults("thin"), training=train.TrainingSpec()):
    """Channel pruning for the NPU: widths in npu_target's channel blocks chosen by Vela's per-layer
    cycles against the channels' importance, cut out by surgery (a smaller dense model), fine-tuned;
    with `distill` > 0, that fraction of the fine-tuning loss is the distance to the input model's
    outputs (core.model.distill). The saved model is the thinned model itself."""
    import tempfile

    from collabopt.core.model import distill as distillation
    from collabopt.core.techniques.channels import thinning

    checks.stage_inputs(data_spec, model_path, classes=metrics.class_labels(training, data_spec.target))
    model, trace = _load(model_path)
    with tempfile.TemporaryDirectory() as work:
        thinned, choice, left_out = thinning.thin_for_npu(
            model, data_spec.representative(VELA_SAMPLES), npu_target, work, score=score, min_keep=min_keep,
            keep_ratio=None if target_cycles is not None else keep_ratio, target_cycles=target_cycles,
            exclude_layers=exclude_layers, strict=strict)
    teacher = keras_io.load_model(model_path) if distill else None  # its own copy: surgery may share layers
    distillation.fit(thinned, teacher, _train(data_spec, fit), alpha=distill, temperature=distill_temperature,
                     epochs=fit.epochs, learning_rate=fit.learning_rate, stage="thin",
                     log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, training=training)
    # {channel group (named by one of its layers): [width before, after]}
    widths = {r: [choice["sizes"][r], w] for r, w in choice["widths"].items() if w < choice["sizes"][r]}
    return _save(thinned, out_dir, {
        **keras_metrics(thinned, data_spec, training), "technique": "thin", "npu_target": npu_target,
        "channel_widths": widths,
        "vela_cycles_before": int(choice["baseline_cycles"]), "vela_cycles_after": int(choice["cycles"]),
        "target_met": bool(choice["met"]), "distill": float(distill), "promises": promises(model_path),
        **_excluded(model_path, "thin", left_out)}, trace=trace, stage="thinned")


def cluster(model_path, data_spec, out_dir, *, number_of_clusters=CLUSTER["number_of_clusters"],
            centroid_init=CLUSTER["centroid_init"], preserve_sparsity=True, per_channel=CLUSTER["per_channel"],
            exclude_layers=CLUSTER["exclude_layers"], strict=CLUSTER["strict"], fit=fit_defaults("cluster"),
            training=train.TrainingSpec(), layer_clusters=CLUSTER["layer_clusters"]):
    checks.stage_inputs(data_spec, model_path, classes=metrics.class_labels(training, data_spec.target))
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "cluster", exclude_layers, strict)
    _, clamped, dropped = cluster_counts.plan(model, number_of_clusters, preserve_sparsity, per_channel, left_out,
                                              layer_clusters)  # named before fine-tuning, logged by optimize
    left_out = {**left_out, **dropped}
    clustered = optimize.cluster(model, _train(data_spec, fit), number_of_clusters=number_of_clusters,
                                 centroid_init=centroid_init, preserve_sparsity=preserve_sparsity,
                                 per_channel=per_channel, epochs=fit.epochs, batch_size=fit.batch_size,
                                 learning_rate=fit.learning_rate,
                                 log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed, left_out=left_out,
                                 training=training, layer_clusters=layer_clusters)
    m = keras_metrics(clustered, data_spec, training)
    kept = promises(model_path) if preserve_sparsity else {}
    return _save(clustered, out_dir, {**m, "technique": "cluster", "promises": {
        **kept, "number_of_clusters": None if layer_clusters else number_of_clusters,
        **({"layer_clusters": dict(layer_clusters)} if layer_clusters else {}), "per_channel": per_channel},
        CLAMPED_CLUSTERS: clamped, **_excluded(model_path, "cluster", left_out)},
        trace=trace, stage="clustered")


def preserving_qat(model_path, data_spec, out_dir, *, scheme=QAT["scheme"], shared_centroids=QAT["shared_centroids"],
                   exclude_layers=QAT["exclude_layers"], strict=QAT["strict"], fit=fit_defaults("qat"),
                   training=train.TrainingSpec()):
    """QAT with the scheme that preserves what the model has; saves the QAT SavedModel."""
    checks.stage_inputs(data_spec, model_path, classes=metrics.class_labels(training, data_spec.target))
    model, trace = _load(model_path)
    left_out = layer_support.plan(model, "qat", exclude_layers, strict)
    per_channel = None if shared_centroids else True
    qat_model, scheme = optimize.preserving_qat(
        model, _train(data_spec, fit), scheme=scheme, epochs=fit.epochs, batch_size=fit.batch_size,
        learning_rate=fit.learning_rate, log_dir=os.path.join(out_dir, LOG_DIR), seed=fit.seed,
        per_channel_clusters=per_channel, left_out=left_out, training=training)
    m = {**_metric(qat_model, data_spec, training), "scheme": scheme, "technique": scheme,
         "num_params": int(model.count_params()), "promises": promises(model_path),
         **_excluded(model_path, "qat", left_out)}
    # The fake-quant kernel is not the deployed one: the converter adds the INT8 kernel instead.
    return _save(qat_model, out_dir, m, trace=trace)


def is_qat_saved_model(saved_model_dir):
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        return b"FakeQuantWithMinMaxVars" in f.read()


def to_tflite(model_path, data_spec, out_dir, *, representative_samples=CONVERT["representative_samples"],
              evaluate=True, training=train.TrainingSpec()):
    """Full-INT8 .tflite (QAT ranges if the model is a QAT model, else PTQ) and its analysis. The
    conversion runs in a child process (core/isolation.py): a native crash fails this path alone."""
    isolation.start()  # the child's server imports TensorFlow while the inputs are checked
    # the train split as the run's other stages read it (not only the calibration samples): a damaged
    # record fails a ptq-only run as it fails one that fine-tunes
    checks.stage_inputs(data_spec, model_path, evaluation=evaluate, classes=metrics.class_labels(training, data_spec.target))
    # The converter asks for representative data even for QAT SavedModels (TF 2.21 checks before it
    # has read the graph); with fake-quant nodes present it uses their ranges and ignores the data.
    rep = data_spec.representative(representative_samples)  # only what calibration uses
    with keras_io.saved_model(model_path) as saved, recurrent.unrolled_saved_model(saved, log) as src:
        qat = is_qat_saved_model(src)  # (a .keras/.h5 file, a recurrent loop: a temporary SavedModel)
        tflite = convert.isolated_saved_model_to_int8(src, rep)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, TFLITE_FILE), "wb") as f:
        f.write(tflite)
    promised = promises(model_path)
    stats = flatbuffer.summarize(tflite, promised.get("m_by_n"))
    stats["mode"] = "qat" if qat else "ptq"
    stats["promises"], stats[EXCLUDED_LAYERS] = promised, excluded_layers(model_path)
    stats["preservation_failures"] = gates.preservation(stats["layers"], stats["promises"], stats[EXCLUDED_LAYERS])
    layer, history = kernel_trace.history(model_path, kernel_trace.model_without_history(model_path))
    if layer:
        w = flatbuffer.kernel_codes(tflite, layer)
        if w is not None:
            history = {**history, INT8_STAGE: w}
        kernel_trace.save(out_dir, layer, history)
    if evaluate:
        value = metrics.of_tflite(training, tflite, data_spec.eval_dataset().as_numpy_iterator(), data_spec.target)
        stats["eval_metric"] = training.eval_metric
        stats.update(metrics.fields(training.eval_metric, {"int8_": value}))
    write_json(os.path.join(out_dir, STATS_FILE), stats)
    return stats


def compile_npu(tflite_path, out_dir, *, accelerator_configs=("ethos-u55-128",), system_config=None,
                memory_mode=None):
    """Vela for each target; per-target numbers under out_dir/<target>/, with where the time goes per
    layer (per_layer.PER_LAYER) and the operators left on the CPU (per_layer.CPU_OPERATORS)."""
    vela.check_int8(tflite_path)
    results = {}
    for acc in accelerator_configs:
        res = per_layer.measure(tflite_path, os.path.join(out_dir, acc), acc, system_config=system_config,
                                memory_mode=memory_mode)
        results[acc] = {k: v for k, v in res.items() if k not in ("rows", "layers")}  # the CSV holds the rows
    write_json(os.path.join(out_dir, STATS_FILE), results)
    return results
