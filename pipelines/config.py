"""Deployment-tree configs: load a YAML file (or a packaged one), check it against
schemas/tree_config.schema.json and what a schema cannot say, and merge it over the defaults.
The one home of config loading, merging and validation."""
import copy
import os
import stat

import yaml

from collabopt import schemas
from collabopt.schemas import defaults

DEFAULTS = defaults.DEFAULTS  # the one table of defaults (schemas/defaults.py)
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
SCALARS = ("name", "paths", "beam_pipeline_args")
MAX_BYTES = 1 << 20  # 1 MiB: a config is a page of YAML; a larger file is refused before it is parsed
MAX_DEPTH = 16  # nesting of mappings and lists (a config needs 4)
MAX_NODES = 10_000  # values once YAML aliases are expanded (a config has a few dozen)


def load(path):
    """A config file (YAML) -> validated, merged config; errors name the file and the field. The file is
    bounded before it is checked: at most MAX_BYTES, nested at most MAX_DEPTH deep, at most MAX_NODES
    values once YAML aliases are expanded (an alias bomb is refused, not expanded)."""
    path = str(path)
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        mode = os.stat(path).st_mode
        if not stat.S_ISFIFO(mode):  # a pipe (collabopt run <(...)) is read as a file, bounded as one
            kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise schemas.ConfigError(f"config file {path!r} is {kind}, not a config file: give a YAML file")
    elif not os.path.isfile(path):
        packaged = os.path.join(CONFIG_DIR, path if path.endswith(".yaml") else path + ".yaml")
        if not os.path.isfile(packaged):
            what = "is a folder, not a config file" if os.path.isdir(path) else "does not exist"
            raise schemas.ConfigError(f"config file {path!r} {what} (packaged configs: "
                                      f"{', '.join(sorted(os.listdir(CONFIG_DIR)))})")
        path = packaged
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise schemas.ConfigError(f"{path}: larger than {MAX_BYTES} bytes; a config is a page of YAML")
    try:
        raw = _parse(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise schemas.ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except yaml.YAMLError as e:
        raise schemas.ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from e
    except schemas.ConfigError as e:
        raise schemas.ConfigError(f"{path}: {e}") from e
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else type(raw).__name__
        raise schemas.ConfigError(f"{path}: a config is a mapping of sections, got {got}")
    try:
        return merge(raw)
    except schemas.ConfigError as e:
        raise schemas.ConfigError(f"{path}: {e}") from e


def _yaml_problem(error):
    """PyYAML's error as 'line L, column C: problem (context at line L, column C)', without its
    multi-line excerpt of the file."""
    def at(mark):
        return f"line {mark.line + 1}, column {mark.column + 1}"
    if not isinstance(error, yaml.MarkedYAMLError) or not error.problem_mark:
        return str(error)
    context = f" ({error.context} at {at(error.context_mark)})" if error.context and error.context_mark else ""
    return f"{at(error.problem_mark)}: {error.problem}{context}"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while it composes."""

    def compose_node(self, parent, index):
        self.depth = getattr(self, "depth", 0) + 1
        try:
            if self.depth > MAX_DEPTH:
                raise schemas.ConfigError(f"line {self.peek_event().start_mark.line + 1}: nested deeper "
                                          f"than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded(node, memo, active, depth=1):
    """(values, depth) of a composed YAML node with its aliases expanded, counted without expanding
    them (each node once); ConfigError past MAX_NODES or MAX_DEPTH, or for an alias inside itself."""
    where = f"line {node.start_mark.line + 1}"
    if id(node) in active:
        raise schemas.ConfigError(f"{where}: a YAML alias refers to a value that contains it")
    if depth > MAX_DEPTH:
        raise schemas.ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels once YAML aliases are expanded")
    if id(node) not in memo:
        active.add(id(node))
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes = [_expanded(c, memo, active, depth + 1) for c in children]
        memo[id(node)] = (1 + sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=0))
        active.discard(id(node))
    values, height = memo[id(node)]
    if values > MAX_NODES:
        raise schemas.ConfigError(f"{where}: more than {MAX_NODES} values once YAML aliases are expanded")
    if depth + height - 1 > MAX_DEPTH:
        raise schemas.ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels once YAML aliases are expanded")
    return values, height


def _parse(text):
    """One YAML document -> Python values, within the bounds."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _overlay(base, sections):
    """A copy of `base` with `sections` merged in, as deep as both are mappings (search.epochs.min alone
    keeps search.epochs.max); a scalar or list replaces."""
    out = copy.deepcopy(base)
    for key, value in (sections or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key not in SCALARS:
            out[key] = _overlay(out[key], value)
        elif isinstance(out.get(key), dict) and value is None:
            pass  # an empty section: its defaults
        else:
            out[key] = copy.deepcopy(value)
    return out


def override(cfg, changes, source="override"):
    """The merged config `cfg` with `changes` ({section: {key: value}}, e.g. command-line options)
    applied, checked by the same schema and rules as a config file; the ConfigError names `source`."""
    try:
        schemas.check(changes)
        return merge(_overlay(cfg, changes))
    except schemas.ConfigError as e:
        raise schemas.ConfigError(f"{source}: {e}") from e


def merge(config):
    """DEFAULTS overridden per section by `config`, after checking it against
    schemas/tree_config.schema.json and what a schema cannot say (files exist, targets agree)."""
    schemas.validate(config)
    cfg = _overlay(DEFAULTS, config)
    problems = []
    sources = [k for k in ("model_uri", "pushed_models", "resolve") if cfg["baseline"].get(k)]
    if len(sources) > 1:
        problems.append(f"baseline: {' and '.join(sources)} are alternatives; set one")
    for section, key in (("baseline", "model_uri"), ("examples", "uri")):
        uri = cfg[section][key]
        if uri and "://" not in uri and not os.path.exists(uri):
            problems.append(f"{section}.{key}: {uri!r} does not exist")
        elif uri and "://" not in uri and key == "model_uri":
            problems += _model_problems(uri, cfg["data"], cfg["training"].get("module_file"))
    problems += schemas.rule_problems(cfg)
    if problems:
        raise schemas.ConfigError("invalid tree_config config:\n  " + "\n  ".join(problems))
    return cfg


def _model_problems(uri, data, module_file=None):
    """What the first stage would refuse in the model at `uri` (the same check, core.checks.model), now
    rather than after the pipeline has started: not a tf_keras model, Keras 3, subclassed, wrong shapes
    (not data.feature_shape with a module_file: its input_fn feeds the inputs, checked by the stage)."""
    from collabopt.core.data import checks  # TensorFlow only when there is a model to look at
    from collabopt.core.model import keras_io
    from collabopt.core.data.examples_io import FASHION_MNIST_SHAPE

    try:
        checks.model(uri, None if module_file else data.get("feature_shape") or FASHION_MNIST_SHAPE)
    except keras_io.ModelError as e:
        return [f"baseline.model_uri: {e}"]
    return []

