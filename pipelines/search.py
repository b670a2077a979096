"""One round of a requirement-driven search as one TFX pipeline: the trials (core.search.Candidate at
some fine-tuning epochs) are nodes with their own ids, independent of each other, next to the
reference leaf (ptq) they are measured against.

Every trial is an MLMD execution; with the cache on, a restarted search reruns the same round and
the finished trials come back CACHED. On Kubeflow the trials are parallel tasks.
"""
from collabopt.components import keys
from collabopt.core import tree_paths
from collabopt.pipelines import config as tree_config, tree

STAGE_NODE = {"prune": "Pruner", "cluster": "Clusterer", "qat": "QAT"}


def trial_ids(candidate, epochs):
    """(convert, npu, evaluate) node ids of a trial; the ptq candidate is the reference leaf itself."""
    if candidate.path == tree_paths.REFERENCE:
        conv, ev, npu = tree.node_ids(tree_paths.REFERENCE)
    else:
        conv, ev, npu = tree.node_ids(f"{candidate.id}_e{epochs}")
    return conv, npu, ev


def stage_id(step, key, epochs):
    """Id of the node that fine-tunes one stage from the baseline (`key`: a stage key of
    core.search.Candidate.stage_keys, or a candidate id when resumed)."""
    return f"{STAGE_NODE[step]}_{key}_e{epochs}"


def node_epochs(node_id):
    """Fine-tuning epochs of a stage node from its id: `..._e2` (from the baseline) or `..._e1to2`
    (resumed at 1, on to 2)."""
    done, _, to = node_id.rsplit("_e", 1)[1].partition("to")
    return int(to) - int(done) if to else int(done)


def _stage_node(cfg, step, prefix, candidate, parent, examples, epochs, node_id, resumed=False):
    from collabopt.components import PreservingQAT, Pruner, SparseClusterer

    data = {**cfg["data"], "training": cfg["training"]}
    if step == "prune":
        # resumed: the model is already sparse; a constant schedule keeps it at the target from step 0
        params = {**cfg["prune"], "epochs": epochs, **({"schedule": "constant"} if resumed else {})}
        if candidate.layer_sparsity:
            params["layer_sparsity"] = dict(candidate.layer_sparsity)
        else:
            params["target_sparsity"] = candidate.sparsity
        return Pruner(model=parent, examples=examples, **data, **params).with_id(node_id), keys.PRUNED_MODEL_KEY
    if step == "cluster":
        params = {**cfg["cluster"], "epochs": epochs}
        if candidate.layer_clusters:
            params["layer_clusters"] = dict(candidate.layer_clusters)
        else:
            params["number_of_clusters"] = candidate.clusters
        return SparseClusterer(model=parent, examples=examples, preserve_sparsity="prune" in prefix, **data,
                               **params).with_id(node_id), keys.CLUSTERED_MODEL_KEY
    node = PreservingQAT(model=parent, examples=examples, **data, **{**cfg["qat"], "epochs": epochs}).with_id(node_id)
    return node, keys.QAT_MODEL_KEY


def create_round(config, candidates, epochs, pipeline_root, metadata_path=None, beam_pipeline_args=None,
                 enable_cache=True, resume=None):
    """The round's TFX Pipeline: inputs (as the tree builds them), the reference leaf, and per
    candidate its stage nodes (shared between candidates whose prefix and parameters are equal:
    core.search.Candidate.stage_keys) and its leaf nodes (TFLiteConverter, NPUCompiler on
    search.npu_target, LeafEvaluator against the reference). No gates here: the search judges.
    `resume`: {candidate id: (model uri, epochs it had)}: that candidate's last stage goes on from
    the model (imported) for the remaining epochs instead of starting from the baseline."""
    from tfx.dsl.components.common import importer
    from tfx.types import standard_artifacts

    from collabopt.components import LeafEvaluator, NPUCompiler, TFLiteConverter

    cfg = tree_config.merge(config)
    comps, examples, baseline = tree._inputs(cfg)  # noqa: SLF001 - the tree's own input assembly
    data, target = {**cfg["data"], "training": cfg["training"]}, cfg["search"]["npu_target"]
    models, reference = {}, None

    def leaf(path_label, ids, model):
        conv_id, npu_id, eval_id = ids
        conv = TFLiteConverter(model=model, examples=examples, **data, **cfg["convert"]).with_id(conv_id)
        tflite = conv.outputs[keys.TFLITE_MODEL_KEY]
        npu = NPUCompiler(tflite_model=tflite, targets=[target], system_config=cfg["npu"]["system_config"],
                          memory_mode=cfg["npu"]["memory_mode"]).with_id(npu_id)
        ev = LeafEvaluator(tflite_model=tflite, model=model, examples=examples, path=path_label,
                           npu_model=npu.outputs[keys.NPU_MODEL_KEY], baseline=reference, **data).with_id(eval_id)
        comps.extend([conv, npu, ev])
        return ev.outputs[keys.EVALUATION_KEY]

    reference = leaf(tree_paths.REFERENCE, trial_ids(_ptq(), epochs), baseline)
    for c in candidates:
        if c.path == tree_paths.REFERENCE:
            continue
        if c.id in (resume or {}):
            uri, done = resume[c.id]
            imp = importer.Importer(source_uri=uri, artifact_type=standard_artifacts.Model,
                                    reimport=False).with_id(f"Resume_{c.id}_e{done}")
            step = c.stages()[-1]
            node, out = _stage_node(cfg, step, c.stages(), c, imp.outputs["result"], examples, epochs - done,
                                    stage_id(step, c.id, f"{done}to{epochs}"), resumed=True)
            comps.extend([imp, node])
            leaf(c.id, trial_ids(c, epochs), node.outputs[out])
            continue
        model, prefix = baseline, ()
        for step, key in zip(c.stages(), c.stage_keys()):
            prefix += (step,)
            node_id = stage_id(step, key, epochs)
            if node_id not in models:
                node, out = _stage_node(cfg, step, prefix, c, model, examples, epochs, node_id)
                comps.append(node)
                models[node_id] = node.outputs[out]
            model = models[node_id]
        leaf(c.id, trial_ids(c, epochs), model)
    return tree.tfx_pipeline(cfg, pipeline_root, comps, metadata_path, beam_pipeline_args, enable_cache)


def _ptq():
    from collabopt.core import search
    return search.Candidate(tree_paths.REFERENCE)


def space(cfg, schedules=()):
    """The candidates of a merged config's search section (its paths default to the config's)."""
    from collabopt.core import search
    s = cfg["search"]
    return search.space(s["paths"] or cfg["paths"], s["sparsities"], s["clusters"], schedules)


def first_round(config):
    """The candidates of a search's first round before any estimate at its first rung: what
    `collabopt compile` packages for Kubeflow. Halving: the whole uniform space; prefix and auto:
    the reference and each first stage's one-stage screen (core.screening)."""
    from collabopt.core import screening

    cfg = tree_config.merge(config)
    cands = space(cfg)
    if cfg["search"]["strategy"] != "halving":  # prefix, auto: the screening round
        screens = [screening.screen(g[0]) for g in screening.groups(cands).values()]
        cands = [c for c in cands if not c.stages()] + screens
    return cands, {**tree_config.DEFAULTS["search"]["epochs"], **cfg["search"]["epochs"]}["min"]
