"""Deployment-tree configs: load a YAML file (or a packaged one), check it against
schemas/tree_config.schema.json and what a schema cannot say, and merge it over the defaults.
The one home of config loading, merging and validation."""
import copy
import os

import yaml

from collabopt import schemas

DEFAULTS = {
    "name": "collabopt-tree",
    "paths": "all",
    "baseline": {"model_uri": None, "pushed_models": None, "epochs": 3, "learning_rate": 1e-3, "width": 64, "blocks": 4},
    "examples": {"uri": None, "data_dir": None, "seed": 0},
    "data": {"train_limit": 0, "eval_limit": 0},  # 0: whole split
    "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "epochs": 2, "learning_rate": 1e-4},
    "cluster": {"number_of_clusters": 8, "centroid_init": "kmeans++", "epochs": 1, "learning_rate": 1e-4},
    "qat": {"scheme": "auto", "epochs": 1, "learning_rate": 1e-5},
    "convert": {"representative_samples": 200},
    "requirements": {"max_int8_accuracy_drop_pp": None, "max_gzip_bytes": None,
                     "max_npu_inference_time_s": None, "npu_target": None},
    "npu": {"targets": ["ethos-u55-128"], "system_config": "", "memory_mode": ""},
    "push": {"destination": None},
    "report": {"title": "collabopt optimization report"},
    "beam_pipeline_args": ["--direct_running_mode=in_memory"],
}
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
SCALARS = ("name", "paths", "beam_pipeline_args")


def load(path):
    """A config file (YAML) -> validated, merged config; errors name the file and the field."""
    path = str(path)
    if not os.path.isfile(path):
        packaged = os.path.join(CONFIG_DIR, path if path.endswith(".yaml") else path + ".yaml")
        if not os.path.isfile(packaged):
            raise schemas.ConfigError(f"config file {path!r} does not exist (packaged configs: "
                                      f"{', '.join(sorted(os.listdir(CONFIG_DIR)))})")
        path = packaged
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise schemas.ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise schemas.ConfigError(f"{path}: a config is a mapping of sections, got {type(raw).__name__}")
    try:
        return merge(raw)
    except schemas.ConfigError as e:
        raise schemas.ConfigError(f"{path}: {e}") from e


def merge(config):
    """DEFAULTS overridden per section by `config`, after checking it against
    schemas/tree_config.schema.json and what a schema cannot say (files exist, targets agree)."""
    schemas.validate(config)
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in config.items():
        if key in SCALARS:
            cfg[key] = value
        else:
            cfg[key].update(value or {})
    problems = []
    sources = [k for k in ("model_uri", "pushed_models", "resolve") if cfg["baseline"].get(k)]
    if len(sources) > 1:
        problems.append(f"baseline: {' and '.join(sources)} are alternatives; set one")
    for section, key in (("baseline", "model_uri"), ("examples", "uri")):
        uri = cfg[section][key]
        if uri and "://" not in uri and not os.path.exists(uri):
            problems.append(f"{section}.{key}: {uri!r} does not exist")
    problems += schemas.rule_problems(cfg)
    if problems:
        raise schemas.ConfigError("invalid tree_config config:\n  " + "\n  ".join(problems))
    return cfg


