"""JSON Schemas for collabopt configs; `validate` names the bad field and why."""
import json
import os

import jsonschema


class ConfigError(ValueError):
    """A config does not match its schema."""


def load(name):
    with open(os.path.join(os.path.dirname(__file__), f"{name}.schema.json")) as f:
        return json.load(f)


def _depth(error):
    """Deeper first; at equal depth a failed constraint over a failed type/const alternative."""
    return len(error.absolute_path), error.validator not in ("type", "const")


def validate(config, name):
    """Raise ConfigError listing every bad field as `section.key: reason`."""
    v = jsonschema.Draft202012Validator(load(name))
    # For oneOf/anyOf, the alternative that got furthest says more than "not valid under any".
    errors = [max(e.context, key=_depth) if e.context else e for e in v.iter_errors(config)]
    errors = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError(f"invalid {name} config:\n  " + "\n  ".join(lines))
    return config
