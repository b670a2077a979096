"""The deployment tree as one TFX pipeline, assembled from a config (YAML or dict).

Every configured path shares its prefix nodes (one Pruner feeds prune_ptq, prune_pqat and the
sparsity-preserving clusterer); every leaf is converted to INT8, compiled once per NPU target (Vela),
evaluated the same way (LeafEvaluator, Beam) and gated; only blessed leaves are pushed (TFX Cond). A
Reporter writes the run's HTML report.
"""
import logging
import os

from collabopt.components import keys
from collabopt.core import tree_paths
from collabopt.core.npu import per_layer
from collabopt.pipelines import config as tree_config, nodes


def data_params(cfg):
    """What every model stage gets about its data: the `data` section (the `training` section,
    target and module_file included, goes as `training=`)."""
    return dict(cfg["data"])


def _inputs(cfg, examples=None, model=None, model_blessing=None):
    """(components, examples channel, baseline model channel).

    Examples: the given channel, the `examples.uri` folder (Importer), the newest Examples in MLMD
    (`examples.resolve: latest`), or Fashion-MNIST. Baseline: the newest blessed Model
    (`baseline.resolve: latest_blessed`, over the given model/model_blessing channels or every
    Model/ModelBlessing in MLMD), the given channel, `baseline.model_uri` (Importer), or our trainer.
    """
    from tfx.dsl.components.common import importer, resolver
    from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
    from tfx.types import channel, standard_artifacts

    from collabopt.components import BaselineTrainer, FashionMnistExampleGen, LatestPushedModel

    comps, data = [], data_params(cfg)
    ex = dict(cfg["examples"])
    resolve_examples = ex.pop("resolve", None)
    if examples is not None:
        pass
    elif ex["uri"]:
        imp = importer.Importer(
            source_uri=ex["uri"], artifact_type=standard_artifacts.Examples, reimport=False,
            properties={"split_names": f'["{data.get("train_split", "train")}", "{data.get("eval_split", "eval")}"]'}
        ).with_id("ExamplesImporter")
        comps.append(imp)
        examples = imp.outputs["result"]
    elif resolve_examples != "latest":
        gen = FashionMnistExampleGen(train_limit=data["train_limit"], eval_limit=data["eval_limit"],
                                     **{k: v for k, v in ex.items() if k != "uri" and v is not None})
        comps.append(gen)
        examples = gen.outputs[keys.EXAMPLES_KEY]
    if resolve_examples == "latest":
        latest = resolver.Resolver(strategy_class=LatestArtifactStrategy,
                                   examples=examples or channel.Channel(type=standard_artifacts.Examples)
                                   ).with_id("LatestExamples")
        comps.append(latest)
        examples = latest.outputs[keys.EXAMPLES_KEY]
    base = dict(cfg["baseline"])
    model_uri, resolve_model = base.pop("model_uri"), base.pop("resolve", None)
    pushed = base.pop("pushed_models")
    if pushed:
        latest = LatestPushedModel(pushed_models=pushed)
        comps.append(latest)
        return comps, examples, latest.outputs[keys.MODEL_KEY]
    if resolve_model == "latest_blessed":
        latest = resolver.Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=model or channel.Channel(type=standard_artifacts.Model),
            model_blessing=model_blessing or channel.Channel(type=standard_artifacts.ModelBlessing),
        ).with_id("LatestBlessedBaseline")
        comps.append(latest)
        return comps, examples, latest.outputs[keys.MODEL_KEY]
    if model is not None:
        return comps, examples, model
    if model_uri:
        imp = importer.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model,
                                reimport=False).with_id("BaselineImporter")
        comps.append(imp)
        return comps, examples, imp.outputs["result"]
    trainer = BaselineTrainer(examples=examples, **data, **base, training=cfg["training"])
    comps.append(trainer)
    return comps, examples, trainer.outputs[keys.MODEL_KEY]


def create_pipeline(config, pipeline_root, metadata_path=None, beam_pipeline_args=None, publish_dir=None, *,
                    examples=None, model=None, model_blessing=None, components=(), parameters=None,
                    enable_cache=False):
    """A TFX Pipeline of the configured paths. `config`: a config dict (raw, or from config.load).
    With `metadata_path`, MLMD is SQLite there (local runs); KFP compiles leave it None. The report
    is also written to `publish_dir` (default: the folder holding the pipeline root).

    Your own pieces plug in: `examples` (an ExampleGen's output), `model` (a Trainer's), and with
    `baseline.resolve: latest_blessed`, `model_blessing` (an Evaluator's); pass their components in
    `components` so they run in the same pipeline. `parameters`: {"section.key" or "section": value}
    set after the config is checked, e.g. TFX RuntimeParameters (kubeflow.compiler.runtime_parameters).
    `enable_cache`: TFX's cache (`collabopt run` turns it on; runners.run keeps it off for
    components whose CACHEABLE is False)."""
    from tfx.dsl.experimental.conditionals import conditional

    from collabopt.components import LeafPusher, Reporter

    cfg = tree_config.merge(config)  # validated every time: a dict with every section is no exception
    for key, value in (parameters or {}).items():
        section, _, name = key.partition(".")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    comps, examples, baseline = _inputs(cfg, examples, model, model_blessing)
    comps = [*components, *comps]
    models = {(): baseline}  # stage prefix -> its Model channel; shared by every path through it

    def model_for(prefix):
        if prefix not in models:
            node, models[prefix] = nodes.stage_node(cfg, prefix, model_for(prefix[:-1]), examples,
                                                    nodes.stage_id(prefix))
            comps.append(node)
        return models[prefix]

    paths = tree_paths.expand(cfg["paths"])
    if m_by_n_note(cfg):
        logging.getLogger("collabopt").info(m_by_n_note(cfg))
    push_to = cfg["push"]["destination"]
    requirements = cfg["requirements"]
    if isinstance(requirements, dict):
        requirements = {k: v for k, v in requirements.items() if v is not None}
    evaluations = {}
    for path in paths:  # the reference (ptq) first: the others compare with it
        leaf = nodes.leaf_nodes(cfg, path, model_for(tree_paths.PATHS[path]), examples,
                                reference=evaluations.get(tree_paths.REFERENCE), requirements=requirements,
                                destination=push_to)
        evaluations[path] = leaf.evaluate.outputs[keys.EVALUATION_KEY]
        comps += list(leaf)
        if push_to:  # only a blessed leaf is pushed
            ev, tflite = leaf.evaluate.outputs, leaf.convert.outputs[keys.TFLITE_MODEL_KEY]
            with conditional.Cond(ev[keys.BLESSING_KEY].future()[0].custom_property(keys.BLESSED) == 1):
                comps.append(LeafPusher(
                    tflite_model=tflite, evaluation=ev[keys.EVALUATION_KEY], blessing=ev[keys.BLESSING_KEY],
                    npu_model=leaf.npu.outputs[keys.NPU_MODEL_KEY], path=path, destination=push_to
                ).with_id(f"Push_{path}"))
    if publish_dir is None and "://" not in str(pipeline_root):
        publish_dir = os.path.dirname(os.path.abspath(str(pipeline_root)))
    comps.append(Reporter(evaluations, title=cfg["report"]["title"], publish_dir=publish_dir or ""))
    if any(tree_paths.PATHS[p] for p in paths):  # before any node fine-tunes (ptq alone: Convert_ptq is first)
        comps.append(nodes.preflight(cfg, baseline, examples, comps))
    return tfx_pipeline(cfg, pipeline_root, comps, metadata_path, beam_pipeline_args, enable_cache)


def m_by_n_note(cfg):
    """per_layer.m_by_n_note of a merged config whose paths prune (None if none does)."""
    if any("prune" in tree_paths.PATHS[p] for p in tree_paths.expand(cfg["paths"])):
        return per_layer.m_by_n_note(cfg["prune"]["m_by_n"], cfg["npu"]["targets"])
    return None


def tfx_pipeline(cfg, pipeline_root, comps, metadata_path=None, beam_pipeline_args=None, enable_cache=True):
    """The TFX Pipeline of `comps` (the tree's, or a search round's): SQLite MLMD at metadata_path
    (None: the orchestrator's, e.g. KFP), the config's Beam args unless given."""
    from tfx.orchestration import metadata, pipeline

    from collabopt.core.evaluation import beam_eval  # Beam's args
    return pipeline.Pipeline(
        pipeline_name=cfg["name"], pipeline_root=str(pipeline_root), components=comps,
        metadata_connection_config=(metadata.sqlite_metadata_connection_config(str(metadata_path))
                                    if metadata_path else None),
        beam_pipeline_args=beam_eval.beam_args(beam_pipeline_args or cfg["beam_pipeline_args"]),
        enable_cache=enable_cache)
