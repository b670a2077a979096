"""One round of a requirement-driven search as one TFX pipeline: the trials (search.space.Candidate at
some fine-tuning epochs) are nodes of their own, independent of each other, next to the reference
leaf (ptq) they are measured against. The nodes come from the tree's own builder (pipelines/nodes.py):
a trial of the config's own stage is the tree's node (same id), others carry a key, e.g.
`Pruner_s75_e1`, `SparseClusterer_pl1_e2`, `ChannelPruner_t75_e1`, `Convert_prune_cluster_ptq_s75_k8_e1`.

Every trial is an MLMD execution; with the cache on, a restarted search reruns the same round and
the finished trials come back CACHED. On Kubeflow the trials are parallel tasks.
"""
import dataclasses

from collabopt.components import keys
from collabopt.core import tree_paths
from collabopt.pipelines import config as tree_config, nodes, tree
from collabopt.search import space


@dataclasses.dataclass
class Round:
    """A round's pipeline, each candidate's leaf node ids, and the fine-tuning epochs of each stage node."""
    pipeline: object
    leaves: dict  # candidate id -> nodes.LeafIds
    epochs: dict  # stage node id -> epochs it fine-tunes


def _stage_params(cfg, step, candidate, epochs, resumed=False):
    """The candidate's parameters for one stage (over the config's section)."""
    params = {"epochs": epochs}
    if step == tree_paths.THIN:  # to the candidate's keep ratio (not a cycles target), for the search's NPU
        params.update(keep_ratio=candidate.keep, target_cycles=None, npu_target=cfg["search"]["npu_target"])
    elif step == "prune":
        if candidate.layer_sparsity:
            params["layer_sparsity"] = dict(candidate.layer_sparsity)
        else:
            params["target_sparsity"] = candidate.sparsity
        if resumed:  # the model is already sparse: a constant schedule keeps it at the target from step 1
            params["schedule"] = "constant"
    elif step == "cluster":
        if candidate.layer_clusters:
            params["layer_clusters"] = dict(candidate.layer_clusters)
        else:
            params["number_of_clusters"] = candidate.clusters
    return params


def _own(cfg, step, params):
    """Whether these are the config's own parameters for `step` (the tree's stage)."""
    section = cfg[step]
    return all(section.get(k) == v for k, v in params.items())


def _tokens(candidate, prefix):
    """The candidate's parameter tokens up to `prefix` (s50, k8, a schedule's name once)."""
    tokens = []
    for token in candidate.stage_tokens()[:len(prefix)]:
        if token and (not tokens or tokens[-1] != token):
            tokens.append(token)
    return tokens


def stage_key(cfg, candidate, prefix, epochs):
    """The key of the node computing `prefix` for `candidate`: "" when every stage of the prefix is the
    config's own (the tree's node), else the candidate's parameter tokens and the epochs."""
    steps = candidate.stages()[:len(prefix)]
    if all(_own(cfg, s, _stage_params(cfg, s, candidate, epochs)) for s in steps):
        return ""
    return "_".join(_tokens(candidate, prefix) + [f"e{epochs}"])


def trial_ids(cfg, candidate, epochs):
    """(convert, npu, evaluate) node ids of a trial: the tree leaf's for the reference and for a candidate
    whose every stage is the config's own."""
    own = not candidate.stages() or not stage_key(cfg, candidate, candidate.stages(), epochs)
    return nodes.leaf_ids(candidate.path if own else f"{candidate.id}_e{epochs}")


def create_round(config, candidates, epochs, pipeline_root, metadata_path=None, beam_pipeline_args=None,
                 enable_cache=True, resume=None):
    """The round: inputs (as the tree builds them), the reference leaf, and per candidate its stage
    nodes (shared between candidates whose prefix and parameters are equal) and its leaf nodes
    (TFLiteConverter, NPUCompiler on search.npu_target, LeafEvaluator against the reference). No
    gates here: the search judges. `resume`: {candidate id: (model uri, epochs it had)}: that
    candidate's last stage goes on from the model (imported) for the remaining epochs instead of
    starting from the baseline. Returns a Round."""
    from tfx.dsl.components.common import importer
    from tfx.types import standard_artifacts

    cfg = tree_config.merge(config)
    comps, examples, baseline = tree._inputs(cfg)  # noqa: SLF001 - the tree's own input assembly
    targets = [cfg["search"]["npu_target"]]
    models, plan, leaves = {}, {}, {}

    def leaf(c, model, reference=None):
        ids = trial_ids(cfg, c, epochs)
        built = nodes.leaf_nodes(cfg, c.id, model, examples, ids=ids, targets=targets, reference=reference)
        comps.extend(built)
        leaves[c.id] = ids
        return built.evaluate.outputs[keys.EVALUATION_KEY]

    ptq = space.Candidate(tree_paths.REFERENCE)
    reference = leaf(ptq, baseline)
    for c in candidates:
        if c.path == tree_paths.REFERENCE:
            leaves[c.id] = leaves[ptq.id]
            continue
        if c.id in (resume or {}):
            uri, done = resume[c.id]
            imp = importer.Importer(source_uri=uri, artifact_type=standard_artifacts.Model,
                                    reimport=False).with_id(f"Resume_{c.id}_e{done}")
            prefix = c.stages()
            key = "_".join(_tokens(c, prefix) + [f"e{done}to{epochs}"])
            node, out = nodes.stage_node(cfg, prefix, imp.outputs["result"], examples, nodes.stage_id(prefix, key),
                                         **_stage_params(cfg, prefix[-1], c, epochs - done, resumed=True))
            comps.extend([imp, node])
            plan[node.id] = epochs - done
            leaf(c, out, reference)
            continue
        model, prefix = baseline, ()
        for step in c.stages():
            prefix += (step,)
            node_id = nodes.stage_id(prefix, stage_key(cfg, c, prefix, epochs))
            if node_id not in models:
                node, models[node_id] = nodes.stage_node(cfg, prefix, model, examples, node_id,
                                                         **_stage_params(cfg, step, c, epochs))
                comps.append(node)
                plan[node_id] = epochs
            model = models[node_id]
        leaf(c, model, reference)
    pipe = tree.tfx_pipeline(cfg, pipeline_root, comps, metadata_path, beam_pipeline_args, enable_cache)
    return Round(pipe, leaves, plan)


def first_round(config):
    """The candidates of a search's first round before any estimate at its first rung: what
    `collabopt compile` packages for Kubeflow. Halving: the whole uniform space; prefix and auto:
    the reference and each first stage's one-stage screen (search.prefix)."""
    from collabopt.search import prefix

    cfg = tree_config.merge(config)
    cands = space.of_config(cfg)
    if cfg["search"]["strategy"] != "halving":  # prefix, auto: the screening round
        screens = [prefix.screen(g[0]) for g in prefix.groups(cands).values()]
        cands = [c for c in cands if not c.stages()] + screens
    return cands, cfg["search"]["epochs"]["min"]
