"""What the benchmarks share: Fashion-MNIST Examples folders, baselines trained here, results I/O,
markdown tables and timing. Not part of the library's API (and not tested); each benchmark script
imports it as collabopt.benchmarks.common."""
import datetime
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def log_progress():
    """Show collabopt's per-epoch lines (the pipeline's executors set this up themselves)."""
    import logging
    log = logging.getLogger("collabopt")
    log.setLevel(logging.INFO)
    if not log.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)
    log.propagate = False  # TFX/absl configure the root logger too: one line per message


def results_dir(name, out=None):
    d = os.path.abspath(out or os.path.join(RESULTS, name))
    os.makedirs(d, exist_ok=True)
    return d


def provenance(args):
    """Where a result came from: command line, date, commit, machine."""
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "?", None
    return {"command": ".venv/bin/python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": commit, "tracked_files_modified": dirty, "args": vars(args),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg_at_start": os.getloadavg()}}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_jsonable)
    return path


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def md_table(head, rows):
    """A GitHub-markdown table (cells already formatted)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(v, digits=2):
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def num(v):
    return "-" if v is None else f"{v:,}"


class Timer:
    """with Timer() as t: ...; t.s"""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ------------------------------------------------------------------------------ data and baselines

def pad_to(images, size):
    """uint8 [N, 28, 28] -> [N, size, size], zero-padded around (MobileNet needs >= 32x32)."""
    extra = size - images.shape[1]
    if extra <= 0:
        return images
    lo = extra // 2
    return np.pad(images, ((0, 0), (lo, extra - lo), (lo, extra - lo)))


def write_fashion_mnist(uri, *, train_limit=0, eval_limit=0, size=28, num_shards=4, seed=0):
    """A Fashion-MNIST Examples folder (Split-train/, Split-eval/; uint8 pixels as int64 lists, labels)
    at `uri`, optionally padded to size x size; reused if it is already there. 0 = whole split."""
    from collabopt.core.data import examples_io
    marker = os.path.join(uri, "written.json")
    want = {"train_limit": train_limit, "eval_limit": eval_limit, "size": size, "num_shards": num_shards,
            "seed": seed}
    if os.path.isfile(marker):
        with open(marker) as f:
            if json.load(f) == want:
                return uri
        raise FileExistsError(f"{uri} holds Examples written with other parameters; remove it first")
    d = examples_io.load_fashion_mnist(train_limit=train_limit or None, eval_limit=eval_limit or None, seed=seed)
    splits = {k: (pad_to(x, size), y) for k, (x, y) in d.items()}
    examples_io.write_examples(uri, splits, num_shards=num_shards)
    write_json(marker, want)
    return uri


def mobilenet(input_shape=(32, 32, 1), num_classes=10, alpha=0.25):
    """MobileNet v1 from tf_keras.applications, untrained. Logits out (classifier_activation=None):
    collabopt's fine-tuning loss is sparse categorical cross-entropy from logits."""
    from collabopt.core.tfenv import keras
    return keras.applications.MobileNet(input_shape=input_shape, alpha=alpha, weights=None, classes=num_classes,
                                        classifier_activation=None)


def train_baseline(model, examples_uri, out_dir, *, feature_shape, epochs, learning_rate=1e-3, final_lr_epochs=1,
                   train_limit=0, batch_size=64, seed=0):
    """Train `model` on the Examples' train split (`epochs` at learning_rate, then `final_lr_epochs`
    at a tenth of it) and save it as a tf_keras SavedModel at out_dir. Returns metrics."""
    from collabopt.core.model import keras_io, train
    from collabopt.core.evaluation import metrics
    from collabopt.core import stages
    spec = stages.DataSpec(examples_uri, feature_shape=tuple(feature_shape), train_limit=train_limit)
    with Timer() as t:
        train.fit(model, spec.train_dataset(batch_size, seed=seed), epochs=epochs, learning_rate=learning_rate,
                  stage="baseline", seed=seed)
        if final_lr_epochs:
            train.fit(model, spec.train_dataset(batch_size, seed=seed + 1), epochs=final_lr_epochs,
                      learning_rate=learning_rate / 10, stage="baseline-lr/10", seed=seed + 1)
    keras_io.check_supported(model)
    keras_io.save_model(model, out_dir)
    return {"fp32_accuracy": metrics.of_keras(train.TrainingSpec(), model, spec.eval_dataset()),
            "train_examples": spec.count(spec.train_split, spec.train_cap()), "eval_examples": spec.count(spec.eval_split), "params": int(model.count_params()), "epochs": epochs,
            "final_lr_epochs": final_lr_epochs, "train_seconds": round(t.s, 1)}


def run_each(name, a, run_one, after=None):
    """The benchmark loop: `run_one(arch)` for each of the comma-separated `a.arch`, timed (its result's
    "seconds"), then `after(result)`, and <out>/<name>.json (provenance + results so far) rewritten after
    each. Returns (results, provenance)."""
    log_progress()
    out = results_dir(name, a.out)
    meta = provenance(a)
    results = []
    for arch in a.arch.split(","):
        with Timer() as t:
            res = run_one(arch, out)
        res["seconds"] = round(t.s, 1)
        results.append(res)
        if after:
            after(res, out)
        write_json(os.path.join(out, f"{name}.json"), {**meta, "results": results})
        print(f"[{arch}] done in {t.s:.0f} s", flush=True)
    return results, meta
