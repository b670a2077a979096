"""The PCQAT path of the deployment tree: prune -> sparsity-preserving cluster -> PCQAT -> INT8 -> NPU."""
import copy

from tfx.dsl.components.common import importer
from tfx.orchestration import metadata, pipeline
from tfx.types import standard_artifacts

from collabopt import schemas
from collabopt.components import (BaselineTrainer, FashionMnistExampleGen, NPUCompiler, PreservingQAT,
                                  Pruner, SparseClusterer, TFLiteConverter)

# Parameters of each stage; a config overrides any of them (merged per section).
DEFAULTS = {
    "data": {"train_limit": 0, "eval_limit": 0},           # 0: whole split
    "examples": {"data_dir": None, "seed": 0},             # FashionMnistExampleGen (demo data)
    "baseline": {"epochs": 3, "learning_rate": 1e-3, "width": 64, "blocks": 4},
    "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "epochs": 2, "learning_rate": 1e-4},
    "cluster": {"number_of_clusters": 8, "centroid_init": "kmeans++", "epochs": 1, "learning_rate": 1e-4},
    "qat": {"scheme": "auto", "epochs": 1, "learning_rate": 1e-5},
    "convert": {"representative_samples": 200},
    "npu": {"accelerator_config": ["ethos-u55-128"]},
}


def merge(config=None):
    """DEFAULTS with the given sections' keys overridden; the config is checked against
    schemas/pcqat_config.schema.json first, so a typo fails before anything runs."""
    schemas.validate(config or {}, "pcqat_config")
    out = copy.deepcopy(DEFAULTS)
    for section, values in (config or {}).items():
        out.setdefault(section, {}).update(values or {})
    return out


def baseline_inputs(cfg, baseline_model_uri=None, examples=None):
    """Examples (ours from Fashion-MNIST unless a channel is given) and the baseline Model (an
    Importer of a SavedModel, or our BaselineTrainer). Returns (components, examples, model)."""
    comps = []
    data = cfg["data"]
    if examples is None:
        gen_kwargs = {k: v for k, v in cfg["examples"].items() if v is not None}
        gen = FashionMnistExampleGen(train_limit=data["train_limit"], eval_limit=data["eval_limit"], **gen_kwargs)
        comps.append(gen)
        examples = gen.outputs["examples"]
    if baseline_model_uri:
        imp = importer.Importer(source_uri=baseline_model_uri, artifact_type=standard_artifacts.Model,
                                reimport=False).with_id("BaselineImporter")
        comps.append(imp)
        model = imp.outputs["result"]
    else:
        trainer = BaselineTrainer(examples=examples, **data, **cfg["baseline"])
        comps.append(trainer)
        model = trainer.outputs["model"]
    return comps, examples, model


def create_pipeline(pipeline_name, pipeline_root, metadata_path=None, config=None, baseline_model_uri=None,
                    examples=None, references=True, beam_pipeline_args=None):
    """The PCQAT path as a TFX pipeline. With `metadata_path`, MLMD is SQLite there (local runs).

    references: also convert the baseline and the pruned+clustered model with PTQ (INT8 without
    QAT), the two leaves the PCQAT leaf is judged against.
    """
    cfg = merge(config)
    comps, examples, model = baseline_inputs(cfg, baseline_model_uri, examples)
    data = cfg["data"]
    pruner = Pruner(model=model, examples=examples, **data, **cfg["prune"])
    clusterer = SparseClusterer(model=pruner.outputs["pruned_model"], examples=examples, **data, **cfg["cluster"])
    qat = PreservingQAT(model=clusterer.outputs["clustered_model"], examples=examples, **data, **cfg["qat"])
    converter = TFLiteConverter(model=qat.outputs["qat_model"], examples=examples, **data, **cfg["convert"])
    npu = NPUCompiler(tflite_model=converter.outputs["tflite_model"], **cfg["npu"])
    refs = []
    if references:
        refs = [TFLiteConverter(model=m, examples=examples, **data, **cfg["convert"]).with_id(name)
                for name, m in (("BaselinePTQ", model), ("PrunedClusteredPTQ", clusterer.outputs["clustered_model"]))]
    return pipeline.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=str(pipeline_root),
        components=[*comps, pruner, clusterer, qat, converter, npu, *refs],
        metadata_connection_config=(metadata.sqlite_metadata_connection_config(str(metadata_path))
                                    if metadata_path else None),
        beam_pipeline_args=beam_pipeline_args or ["--direct_running_mode=in_memory"])
