"""Deployment folders: push a blessed leaf so that it becomes `latest` for its path, read what is
deployed now, and fetch the newest model a TFX Pusher deployed (the baseline of scheduled runs)."""
import json
import os
import time

from collabopt.core import keras_io
from collabopt.core.artifact_files import LEAF_FILE, MODEL_DIR, TFLITE_FILE, read_leaf

LATEST = "latest"  # <destination>/<path>/latest/: the leaf deployed now (a copy of its newest version)


def last_pushed(destination, path_name):
    """The leaf dict of the last pushed (= last blessed) version of a path, with its 'version'; None
    before the first push."""
    from collabopt.core.tfenv import tf
    leaf_json = os.path.join(str(destination), path_name, LATEST, LEAF_FILE)
    if not tf.io.gfile.exists(leaf_json):
        return None
    with tf.io.gfile.GFile(leaf_json) as f:
        return json.load(f)


def _copy_tree(src, dst):
    from collabopt.core.tfenv import tf
    for root, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = os.path.normpath(os.path.join(dst, rel))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def push_leaf(path_name, tflite_dir, evaluation_dir, destination, *, npu_dir=None, version=None):
    """Copy a blessed leaf (model.tflite, leaf.json, Vela output) to <destination>/<path>/<version>/
    and make it <destination>/<path>/latest/. Returns (version, version folder)."""
    from collabopt.core.tfenv import tf
    version = str(version or int(time.time() * 1000))
    folder = os.path.join(str(destination), path_name, version)
    staging = folder + ".partial"  # nothing half-written under a version name
    tf.io.gfile.makedirs(staging)
    tf.io.gfile.copy(os.path.join(str(tflite_dir), TFLITE_FILE), os.path.join(staging, TFLITE_FILE), overwrite=True)
    leaf = read_leaf(evaluation_dir)
    leaf["version"] = version
    with tf.io.gfile.GFile(os.path.join(staging, LEAF_FILE), "w") as f:
        json.dump({k: v for k, v in leaf.items() if k != "layers"}, f, indent=1, sort_keys=True)
    if npu_dir:
        _copy_tree(str(npu_dir), os.path.join(staging, "npu"))
    tf.io.gfile.rename(staging, folder, overwrite=True)
    latest = os.path.join(str(destination), path_name, LATEST)
    if tf.io.gfile.exists(latest):
        tf.io.gfile.rmtree(latest)
    _copy_tree(folder, latest)
    return version, folder


def latest_pushed_model(base_directory, out_dir):
    """Copy the newest version of a TFX Pusher destination (<base>/<integer version>/, the
    SavedModel pushed last; a Pusher pushes blessed models only) to out_dir/Format-Serving.
    Returns (version, its folder)."""
    from collabopt.core.tfenv import tf
    base = str(base_directory)
    if not tf.io.gfile.isdir(base):
        raise keras_io.ModelError(f"pushed models folder {base!r} does not exist")
    versions = sorted((int(v.rstrip("/")) for v in tf.io.gfile.listdir(base) if v.rstrip("/").isdigit()))
    versions = [v for v in versions if tf.io.gfile.exists(os.path.join(base, str(v), "saved_model.pb"))]
    if not versions:
        raise keras_io.ModelError(f"no pushed model in {base!r}: expected <version>/saved_model.pb "
                                  f"folders with integer versions, as TFX's Pusher writes them")
    folder = os.path.join(base, str(versions[-1]))
    _copy_tree(folder, os.path.join(str(out_dir), MODEL_DIR))
    return versions[-1], folder
