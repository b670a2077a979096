"""What lives inside collabopt's artifact folders: file names, and reading/writing them.

One home for these names: stages write them, components and the MLMD reader find them, the
deployment folder copies them.
"""
import json
import os

MODEL_DIR = "Format-Serving"      # SavedModel folder inside a Model artifact (as TFX Trainer writes)
LOG_DIR = "logs"                  # TensorBoard logs inside a Model artifact
TFLITE_FILE = "model.tflite"
STATS_FILE = "stats.json"
KERNELS_FILE = "kernels.npz"      # one sample kernel as it was after each stage (the report plots it)
INT8_STAGE = "int8"               # its last entry: the codes stored in the flatbuffer (not floats)
LEAF_FILE = "leaf.json"           # a LeafEvaluation's numbers (and a deployed leaf's)
REPORT_FILE = "report.html"
LEAVES_FILE = "leaves.json"
EXCLUDED_LAYERS = "excluded_layers"  # stats.json / leaf.json: {technique: {layer: why}}
CLAMPED_CLUSTERS = "clamped_clusters"  # a clusterer's stats.json: {layer: "5 clusters, not 16: ..."}
FAILED = "failed"                 # leaf.json (and MLMD, as 1): the path failed before it had a leaf
ERROR = "error"                   # leaf.json (and MLMD): "<node>: <one-line reason>" of that failure


def write_json(path, obj):
    """`obj` as JSON at `path`, atomically: a reader (or a run killed meanwhile) sees the old file or the new."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_failed_leaf(evaluation_dir, path, error):
    """leaf.json of a path that failed before it had a leaf: why, and never blessed. Returns it."""
    leaf = {"path": path, FAILED: True, ERROR: error, "blessed": False, "reasons": [error]}
    os.makedirs(str(evaluation_dir), exist_ok=True)
    write_json(os.path.join(str(evaluation_dir), LEAF_FILE), leaf)
    return leaf


def read_leaf(evaluation_dir):
    with open(os.path.join(str(evaluation_dir), LEAF_FILE)) as f:
        return json.load(f)


def _carried(model_path, key):
    """What the stats.json next to a model's SavedModel carries forward under `key` ({} without one:
    a user's own model)."""
    path = os.path.join(str(model_path), STATS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return dict(json.load(f).get(key, {}))


def promises(model_path):
    """What upstream stages promised about this model (target sparsity, clusters)."""
    return _carried(model_path, "promises")


def excluded_layers(model_path):
    """The layers upstream stages left out: {technique: {layer: why}}."""
    return _carried(model_path, EXCLUDED_LAYERS)
