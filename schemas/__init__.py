"""The config contract: JSON Schemas, and the one validator that every check calls.

A rule is written once, here (the schema, plus the few cross-field rules a schema cannot state), and
applied the same way at config load (`validate`), at component construction and again in the
executor (`check`): the same value fails with the same `section.key: why` message everywhere.
"""
import copy
import functools
import json
import os
import re

import jsonschema

from collabopt.schemas import kubernetes


class ConfigError(ValueError):
    """A config (or a component parameter) breaks the config contract; the message names the field."""


@functools.lru_cache(maxsize=None)
def _load(name):
    with open(os.path.join(os.path.dirname(__file__), f"{name}.schema.json")) as f:
        return json.load(f)


def load(name):
    return copy.deepcopy(_load(name))


def _depth(error):
    """Deeper first; at equal depth a failed constraint over a failed type/const alternative."""
    return len(error.absolute_path), error.validator not in ("type", "const")


MAX_VALUE = 100     # characters of the offending value quoted in a problem: jsonschema quotes it whole
MAX_MESSAGE = 1000  # characters of one problem (what the schema lists, e.g. the valid targets, stays whole)
MAX_PROBLEMS = 20


def cap(text, limit=MAX_MESSAGE):
    """`text`, cut to `limit` characters (marked with '...')."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _quoted(error):
    """jsonschema's message with the offending value it quotes first cut to MAX_VALUE characters."""
    value = repr(error.instance)
    if len(value) > MAX_VALUE and error.message.startswith(value):
        return cap(value, MAX_VALUE) + error.message[len(value):]
    return error.message


def _schema_problems(doc, schema):
    v = jsonschema.Draft202012Validator(schema)
    # For oneOf/anyOf, the alternative that got furthest says more than "not valid under any".
    errors = [max(e.context, key=_depth) if e.context else e for e in v.iter_errors(doc)]
    errors = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    problems = [cap(f"{'.'.join(str(p) for p in e.absolute_path) or '<top>'}: {_quoted(e)}") for e in errors]
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS:] = [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems


def rule_problems(doc):
    """The cross-field rules of a tree config a schema cannot state, over the sections `doc` has."""
    problems = []
    m_by_n = (doc.get("prune") or {}).get("m_by_n")
    if isinstance(m_by_n, list) and len(m_by_n) == 2 and all(isinstance(v, int) for v in m_by_n) \
            and not 0 < m_by_n[0] < m_by_n[1]:
        problems.append(f"prune.m_by_n: {m_by_n} must be [M, N] with 0 < M < N (M zeros in every N weights)")
    if m_by_n and (doc.get("prune") or {}).get("layer_sparsity"):
        problems.append("prune.layer_sparsity: not with m_by_n (M:N sparsity is the same for every layer)")
    for section in ("prune", "cluster", "qat"):
        for i, pattern in enumerate((doc.get(section) or {}).get("exclude_layers") or []):
            try:
                re.compile(pattern)
            except (re.error, TypeError) as e:
                problems.append(f"{section}.exclude_layers.{i}: {pattern!r} is not a regular expression ({e})")
    module_file = (doc.get("training") or {}).get("module_file")
    if isinstance(module_file, str) and module_file:
        from collabopt.core.data import user_module  # imports the user's file: only when one is set
        why = user_module.problem(module_file)
        if why:
            problems.append(f"training.module_file: {why}")
    epochs = (doc.get("search") or {}).get("epochs") or {}
    if isinstance(epochs.get("min"), int) and isinstance(epochs.get("max"), int) and epochs["min"] > epochs["max"]:
        problems.append(f"search.epochs: min {epochs['min']} is more than max {epochs['max']}")
    problems += kubernetes.problems(doc.get("kubeflow"))
    req = doc.get("requirements") or {}
    problems += _metric_problems(doc.get("training") or {}, req)
    if req.get("npu_target") and req.get("max_npu_inference_time_s") is None:
        problems.append("requirements.npu_target: set, but max_npu_inference_time_s is not")
    targets = (doc.get("npu") or {}).get("targets")
    if req.get("max_npu_inference_time_s") is not None and targets:
        target = req.get("npu_target") or targets[0]
        if target not in targets:
            problems.append(f"requirements.npu_target: {target!r} is not among npu.targets {targets}")
    return problems


# eval metrics whose values are fractions in [0, 1] (core.metrics.Metric.fraction; no import: schemas is TF-free)
FRACTION_METRICS = ("accuracy", "top_k_accuracy", "auc")


def _metric_problems(training, req):
    """The eval metric must fit the target, the drop requirement the eval metric (training.eval_metric,
    default accuracy)."""
    metric = training.get("eval_metric") or "accuracy"
    problems = []
    if training.get("target") == "features" and metric in ("accuracy", "top_k_accuracy"):
        problems.append(f"training.eval_metric: {metric!r} compares classes, but training.target is 'features' (the "
                        f"output is the input again); use mse, mae or auc")
    if req.get("max_int8_accuracy_drop_pp") is not None:
        if req.get("max_metric_drop") is not None:
            problems.append("requirements.max_metric_drop: set together with max_int8_accuracy_drop_pp; use one")
        elif metric != "accuracy":
            problems.append(f"requirements.max_int8_accuracy_drop_pp: judges top-1 accuracy, but training.eval_metric "
                            f"is {metric!r}; use requirements.max_metric_drop (in {metric}'s units)")
    drop = req.get("max_metric_drop")
    if isinstance(drop, (int, float)) and metric in FRACTION_METRICS and drop > 1:
        problems.append(f"requirements.max_metric_drop: {drop} is more than {metric} can drop (its values are "
                        f"fractions in [0, 1]: 0.01 = 1 pp)")
    return problems


def _raise(problems, header):
    if problems:
        raise ConfigError(header + "\n  ".join(problems) if header else "; ".join(problems))


def validate(config, name="tree_config"):
    """A whole config: raise ConfigError listing every bad field as `section.key: reason`."""
    problems = _schema_problems(config, _load(name))
    if name == "tree_config" and not problems:
        problems = rule_problems(config)
    _raise(problems, f"invalid {name} config:\n  ")
    return config


def check(doc):
    """Some sections of a tree config, e.g. {"prune": {"target_sparsity": 0.5}}, by the same schema and
    rules as a whole config (nothing is required): what components check when they are built and
    executors check again at run time. Raises ConfigError naming each bad field; returns `doc`."""
    schema = dict(_load("tree_config"))
    schema.pop("required", None)
    _raise(_schema_problems(doc, schema) or rule_problems(doc), "")
    return doc
