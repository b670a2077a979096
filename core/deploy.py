"""Deployment folders: push a blessed leaf so that it becomes the deployed (`LATEST`) version of its
path, read what is deployed now, and fetch the newest model a TFX Pusher deployed (the baseline of
scheduled runs).

A path's folder holds its versions, `<destination>/<path>/<version>/`, and one pointer file,
`<destination>/<path>/LATEST`, holding the name of the version deployed now. A push writes the new
version aside and then switches the pointer in one step (written to a temporary name, renamed over
`LATEST`), so a failure at any point leaves the previous pointer and the version it names whole.
Only the pointer decides what is deployed; everything goes through tf.io.gfile (gs:// works)."""
import json
import os
import time
import uuid

from collabopt.core.model import keras_io
from collabopt.core.artifact_files import LEAF_FILE, MODEL_DIR, STATS_FILE, TFLITE_FILE, read_leaf

LATEST = "LATEST"  # <destination>/<path>/LATEST: the name of the version deployed now
STAGING = ".partial-"  # <version>.partial-<id>/: a version being written (never read)
FIRMWARE = "firmware"  # <version>/firmware/<target>/: the TFLM C bundle per target ('cpu': the INT8 model)
VELA_FILE = os.path.splitext(TFLITE_FILE)[0] + "_vela.tflite"  # <npu dir>/<target>/: what Vela wrote


class DeployError(RuntimeError):
    """A deployment folder that cannot be trusted (a lost or dangling LATEST), or a push refused."""


def _path_dir(destination, path_name):
    return os.path.join(str(destination), path_name)


def versions(destination, path_name):
    """The version folders (complete: renamed from their staging name) of a path, oldest first."""
    from collabopt.core.tfenv import tf
    where = _path_dir(destination, path_name)
    if not tf.io.gfile.isdir(where):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(where))
    return sorted((n for n in names if n.isdigit()), key=int)


def deployed_version(destination, path_name):
    """The name of the version deployed now (what LATEST holds); None before the first push. A
    missing LATEST next to existing versions, or a LATEST naming no complete version, is a
    DeployError: treating it as a first run would push without the not-worse comparison."""
    from collabopt.core.tfenv import tf
    where = _path_dir(destination, path_name)
    pointer = os.path.join(where, LATEST)
    if not tf.io.gfile.exists(pointer):
        found = versions(destination, path_name)
        if found:
            raise DeployError(
                f"{where} holds versions ({', '.join(found[-3:])}{', ...' if len(found) > 3 else ''}) but no "
                f"{LATEST} file naming the deployed one: the deployment folder was damaged or predates "
                f"pointer files; write the deployed version's name to {pointer}")
        return None
    with tf.io.gfile.GFile(pointer) as f:
        version = f.read().strip()
    if not tf.io.gfile.exists(os.path.join(where, version, LEAF_FILE)):
        raise DeployError(f"{pointer} names version {version!r}, but {os.path.join(where, version)} holds no "
                          f"{LEAF_FILE}: the deployed version was removed; write an existing version's name there")
    return version


def deployed_folder(destination, path_name):
    """The folder of the version deployed now; None before the first push."""
    version = deployed_version(destination, path_name)
    return None if version is None else os.path.join(_path_dir(destination, path_name), version)


def last_pushed(destination, path_name):
    """The leaf dict of the version deployed now (the last pushed = last blessed one), with its
    'version'; None before the first push."""
    from collabopt.core.tfenv import tf
    folder = deployed_folder(destination, path_name)
    if folder is None:
        return None
    with tf.io.gfile.GFile(os.path.join(folder, LEAF_FILE)) as f:
        return json.load(f)


def _copy_tree(src, dst):
    from collabopt.core.tfenv import tf
    for root, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = os.path.normpath(os.path.join(dst, rel))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def _remove(path):
    """Best effort: what a failed push leaves aside is never read, so a failure here changes nothing."""
    from collabopt.core.tfenv import tf
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)
    except Exception:  # noqa: BLE001
        pass


def _read(path):
    from collabopt.core.tfenv import tf
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def firmware_bundles(path_name, tflite_dir, npu_dir, leaf):
    """{target: {file name: text}}: the C bundle of the leaf's INT8 model ('cpu', with the arena the
    leaf recorded) and of each target's Vela model (core.firmware.c_bundle)."""
    from collabopt.core.firmware import c_bundle
    vela = {}
    if npu_dir:
        for target in json.loads(_read(os.path.join(str(npu_dir), STATS_FILE))):
            vela[target] = _read(os.path.join(str(npu_dir), target, VELA_FILE))
    return c_bundle.leaf_bundles(path_name, _read(os.path.join(str(tflite_dir), TFLITE_FILE)), vela,
                                 leaf.get("tflm_arena"))


def push_leaf(path_name, tflite_dir, evaluation_dir, destination, *, npu_dir=None, version=None):
    """Copy a blessed leaf (model.tflite, leaf.json, Vela output, the firmware bundles) to
    <destination>/<path>/<version>/ and switch <destination>/<path>/LATEST to it. Returns (version,
    version folder).

    Refused (DeployError, nothing written) when the deployment folder is damaged, or when the
    version deployed now is not the one the leaf was judged against (its evaluation's
    'previous_version', none for a first push): another run deployed meanwhile, or the evaluation
    was reused (cached) from before that; evaluate again against what is deployed now. A leaf that
    is deployed already (a push killed after its switch, run again) is not pushed twice: returns
    that version."""
    from collabopt.core.tfenv import tf
    where = _path_dir(destination, path_name)
    leaf = {k: v for k, v in read_leaf(evaluation_dir).items() if k != "layers"}
    deployed = deployed_version(destination, path_name)
    if deployed is not None and {**last_pushed(destination, path_name), "version": None} == {**leaf, "version": None}:
        return deployed, os.path.join(where, deployed)
    if deployed != leaf.get("previous_version"):
        judged = leaf.get("previous_version")
        raise DeployError(
            f"not pushing {path_name}: version {deployed} is deployed now, but this leaf was judged against "
            f"{'version ' + judged if judged else 'no deployed leaf'} (another run pushed since, or this "
            f"evaluation came from the cache): judge it again, e.g. collabopt run --no-cache")
    bundles = firmware_bundles(path_name, tflite_dir, npu_dir, leaf)  # made before anything is written
    version = str(version or int(time.time() * 1000))
    while tf.io.gfile.exists(os.path.join(where, version)):  # versions are milliseconds: two in one
        version = str(int(version) + 1)
    folder = os.path.join(where, version)
    staging = folder + STAGING + uuid.uuid4().hex[:8]  # nothing half-written under a version name
    pointer_tmp = os.path.join(where, f".{LATEST}.{uuid.uuid4().hex[:8]}")
    renamed = switched = False
    try:
        tf.io.gfile.makedirs(staging)
        tf.io.gfile.copy(os.path.join(str(tflite_dir), TFLITE_FILE), os.path.join(staging, TFLITE_FILE))
        leaf["version"] = version
        with tf.io.gfile.GFile(os.path.join(staging, LEAF_FILE), "w") as f:
            f.write(json.dumps(leaf, indent=1, sort_keys=True))
        if npu_dir:
            _copy_tree(str(npu_dir), os.path.join(staging, "npu"))
        for target, files in bundles.items():
            folder_of = os.path.join(staging, FIRMWARE, target)
            tf.io.gfile.makedirs(folder_of)
            for name, text in files.items():
                with tf.io.gfile.GFile(os.path.join(folder_of, name), "w") as f:
                    f.write(text)
        tf.io.gfile.rename(staging, folder)
        renamed = True
        with tf.io.gfile.GFile(pointer_tmp, "w") as f:
            f.write(version + "\n")
        tf.io.gfile.rename(pointer_tmp, os.path.join(where, LATEST), overwrite=True)  # the one switch
        switched = True
    finally:
        if not switched:  # the previous LATEST (or none) still decides; clear what was written aside
            _remove(pointer_tmp)
            _remove(staging)
            if renamed and not _may_be_deployed(where, version):  # a rename can fail after it was done
                _remove(folder)
    return version, folder


def _may_be_deployed(where, version):
    from collabopt.core.tfenv import tf
    try:
        with tf.io.gfile.GFile(os.path.join(where, LATEST)) as f:
            return f.read().strip() == version
    except tf.errors.NotFoundError:
        return False
    except Exception:  # noqa: BLE001 - unreadable: keep the folder, it may be the deployed one
        return True


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
