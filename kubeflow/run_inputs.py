"""What a KFP run is given, checked before any request: typed pipeline parameters (and the config
values they set, by the config schema), and the cron of a recurring run."""
import json
import re

from collabopt.kubeflow import KfpError
from collabopt.kubeflow.compiler import config_key


def _typed(name, value, ptype):
    try:
        if ptype == "NUMBER_INTEGER":
            return int(value)
        if ptype == "NUMBER_DOUBLE":
            return float(value)
        if ptype == "BOOLEAN":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0"):
                return str(value).lower() in ("true", "1")
            raise ValueError(value)
        if ptype in ("LIST", "STRUCT"):
            return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise KfpError(f"parameter {name}={value!r}: not a valid {ptype}") from None
    return str(value)


def parse_params(params, spec):
    """{name: value} or ["name=value", ...] -> the run's parameters, typed as the package declares them.
    Unknown names and malformed items are errors."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    items = {}
    if isinstance(params, dict):
        items = dict(params)
    else:
        for item in params or ():
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise KfpError(f"--param {item!r}: expected NAME=VALUE")
            items[name.strip()] = value
    unknown = sorted(set(items) - set(declared))
    if unknown:
        raise KfpError(f"unknown pipeline parameter(s) {unknown}; this package takes "
                       f"{', '.join(sorted(declared)) or 'no parameters'}")
    return {k: _typed(k, v, declared[k].get("parameterType", "STRING")) for k, v in items.items()}


# KFP's scheduled workflows use robfig/cron: six fields, seconds first, or a descriptor.
CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
               ("month", 1, 12), ("day of week", 0, 6))
_NAMES = {4: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          5: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _cron_value(text, i):
    name, lo, hi = CRON_FIELDS[i]
    low = text.lower()
    if i in _NAMES and low in _NAMES[i]:
        return _NAMES[i].index(low) + (1 if i == 4 else 0)
    if not text.isdigit():
        raise KfpError(f"cron {name} field: {text!r} is not a number")
    v = int(text)
    if not lo <= v <= hi:
        raise KfpError(f"cron {name} field: {v} is outside {lo}-{hi}")
    return v


def validate_cron(cron):
    """A cron expression KFP accepts (6 fields: second minute hour day-of-month month day-of-week,
    or @daily, @every 1h, ...), else KfpError saying what is wrong."""
    expr = str(cron or "").strip()
    if expr.startswith("@"):
        if expr in _DESCRIPTORS or (expr.startswith("@every ") and _DURATION.match(expr[7:].strip())):
            return expr
        raise KfpError(f"cron {expr!r}: unknown descriptor (use {', '.join(_DESCRIPTORS)} or '@every 1h30m')")
    fields = expr.split()
    if len(fields) != 6:
        hint = (f"; KFP's first field is seconds: did you mean '0 {expr}'?" if len(fields) == 5 else "")
        raise KfpError(f"cron {expr!r} has {len(fields)} fields, KFP needs 6 (second minute hour "
                       f"day-of-month month day-of-week){hint}")
    for i, field in enumerate(fields):
        for part in field.split(","):
            rng, _, step = part.partition("/")
            if _ and not (step.isdigit() and int(step) > 0):
                raise KfpError(f"cron {CRON_FIELDS[i][0]} field: step {step!r} must be a positive integer")
            if rng in ("*", "?"):
                continue
            start, dash, end = rng.partition("-")
            a = _cron_value(start, i)
            if dash and _cron_value(end, i) < a:
                raise KfpError(f"cron {CRON_FIELDS[i][0]} field: range {rng!r} runs backwards")
    return expr


def check_config_values(values, spec):
    """The values of parameters that set a config key, checked by the config schema (the executor
    checks them again at run time)."""
    from collabopt import schemas
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, value in values.items():
        key = config_key(declared[name])
        if key is None:
            continue
        section, _, field = key.partition(".")
        try:
            if field:
                doc = {section: {field: value}}
            else:
                try:
                    doc = {section: json.loads(value)}
                except ValueError as e:
                    raise schemas.ConfigError(f"{section}: not JSON ({e})") from None
            schemas.check(doc)
        except schemas.ConfigError as e:
            raise KfpError(f"--param {name}={value!r}: {e}") from None
