"""The one builder of deployment-tree nodes, for the tree (pipelines/tree.py) and the search's trials
(search/trials.py): a stage's node and a leaf's nodes, with one naming and one order.

A stage node's id is its kind, which names its prefix (Pruner; SparseClusterer after pruning,
Clusterer without; the QAT node by the scheme its prefix calls for: QAT, PQAT, CQAT, PCQAT; ChannelPruner,
and "Thin" before the kind of every stage below it: ThinPruner, ThinPCQAT),
followed by a key only when the node's parameters are not the config's own (a search trial:
`Pruner_s75_e1`). So a search trial of the config's own stage is the tree's node, and the cache
serves one to the other. A leaf's nodes are (convert, npu, evaluate), in that order everywhere.
"""
import collections

from collabopt.components import keys
from collabopt.core import tree_paths

LeafIds = collections.namedtuple("LeafIds", "convert npu evaluate")


def stage_kind(prefix):
    """The node kind of the last stage of `prefix` (a tuple of tree_paths stages); below the thinned
    model, "Thin" first (ThinPruner, ThinPCQAT, ...), so the thinned subtree's nodes are its own."""
    step, before = prefix[-1], tuple(prefix[:-1])
    if step == tree_paths.THIN:
        return "ChannelPruner"
    below = "Thin" if tree_paths.THIN in before else ""
    if step == "prune":
        return below + "Pruner"
    if step == "cluster":
        return below + ("SparseClusterer" if "prune" in before else "Clusterer")
    return below + tree_paths.qat_scheme(before).upper()


def stage_id(prefix, key=""):
    """Id of the node computing `prefix`'s last stage; `key`: what sets it apart from the config's own."""
    return stage_kind(prefix) + (f"_{key}" if key else "")


def leaf_ids(name):
    """(convert, npu, evaluate) node ids of a leaf (a tree path, or a search trial's id)."""
    return LeafIds(f"Convert_{name}", f"NPU_{name}", f"Evaluate_{name}")


def stage_node(cfg, prefix, parent, examples, node_id, **params):
    """The component that computes `prefix`'s last stage from the `parent` Model channel: the config's
    section for that stage, overridden by `params`. Returns (component, its Model output channel)."""
    from collabopt.components import ChannelPruner, PreservingQAT, Pruner, SparseClusterer

    step = prefix[-1]
    common = {"model": parent, "examples": examples, **cfg["data"], "training": cfg["training"]}
    if step == "prune":
        node, key = Pruner(**common, **{**cfg["prune"], **params}), keys.PRUNED_MODEL_KEY
    elif step == "thin":
        node, key = ChannelPruner(**common, **{**cfg["thin"], **params}), keys.THINNED_MODEL_KEY
    elif step == "cluster":
        node, key = SparseClusterer(**common, preserve_sparsity="prune" in prefix,
                                    **{**cfg["cluster"], **params}), keys.CLUSTERED_MODEL_KEY
    else:
        node, key = PreservingQAT(**common, **{**cfg["qat"], **params}), keys.QAT_MODEL_KEY
    node = node.with_id(node_id)
    return node, node.outputs[key]


def preflight(cfg, baseline, examples, comps):
    """The Preflight node over the `baseline` Model channel, run before every node of `comps` that reads
    that channel (a TFX task dependency: it has no outputs), so a baseline the converter refuses stops
    the run before any fine-tuning. Returns the node (not added to `comps`)."""
    from collabopt.components import Preflight

    node = Preflight(model=baseline, examples=examples, **cfg["data"], training=cfg["training"]).with_id("Preflight")
    for comp in comps:
        if any(ch is baseline for ch in comp.inputs.values()):
            comp.add_upstream_node(node)
    return node


def leaf_nodes(cfg, name, model, examples, *, ids=None, targets=None, reference=None, requirements=None,
               destination=None):
    """A leaf's nodes: TFLiteConverter (full INT8), NPUCompiler (Vela, once per target: `targets`, default
    npu.targets) and LeafEvaluator (against the `reference` leaf's evaluation; with `requirements` and
    `destination`, the gates of a tree leaf). Returns LeafIds of the components."""
    from collabopt.components import LeafEvaluator, NPUCompiler, TFLiteConverter

    ids = ids or leaf_ids(name)
    common = {"examples": examples, **cfg["data"], "training": cfg["training"]}
    conv = TFLiteConverter(model=model, **common, **cfg["convert"]).with_id(ids.convert)
    tflite = conv.outputs[keys.TFLITE_MODEL_KEY]
    npu = NPUCompiler(tflite_model=tflite, targets=targets or cfg["npu"]["targets"],
                      system_config=cfg["npu"]["system_config"], memory_mode=cfg["npu"]["memory_mode"]).with_id(ids.npu)
    ev = LeafEvaluator(tflite_model=tflite, model=model, path=name, npu_model=npu.outputs[keys.NPU_MODEL_KEY],
                       baseline=reference, requirements=requirements, destination=destination,
                       check_examples=cfg["tflm"]["check_examples"],
                       **common).with_id(ids.evaluate)
    return LeafIds(conv, npu, ev)
