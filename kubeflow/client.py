"""Kubeflow Pipelines' REST API (v2beta1) through kfp.Client: one run of a compiled package (submit)
or a recurring run on a cron (schedule). Every mistake that can be seen locally (package file,
parameters, cron, concurrency) fails before any request; API failures become KfpError naming the host.
"""
import contextlib
import datetime
import json
import re

from collabopt.kubeflow import KfpError
from collabopt.kubeflow.compiler import load_package


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


@contextlib.contextmanager
def _api_errors(host):
    """kfp.Client failures as KfpError naming the host."""
    import kfp_server_api
    import urllib3
    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError) as e:  # MaxRetryError: refused, DNS, timeout
        raise KfpError(f"cannot reach Kubeflow Pipelines at {host}: {getattr(e, 'reason', None) or e}") from e
    except kfp_server_api.ApiException as e:
        body = (e.body or "").strip()
        try:
            body = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            pass
        raise KfpError(f"Kubeflow Pipelines at {host} refused the request: HTTP {e.status} {e.reason}: "
                       f"{body}") from e
    except TimeoutError as e:  # kfp.Client gives up on /healthz after 5 tries
        raise KfpError(f"no Kubeflow Pipelines API answers at {host}: {e}") from e


def _client(host):
    import warnings

    import kfp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2+"
        return kfp.Client(host=host)  # asks /apis/v2beta1/healthz whether KFP is multi-user


def _prepare(package, params, pipeline_root):
    spec = load_package(package)
    values = parse_params(params, spec)
    root = pipeline_root or spec.get("defaultPipelineRoot")
    if not root:
        raise KfpError(f"{package}: no pipeline root: pass one (e.g. gs://bucket/root); TFX components write "
                       "their artifacts with tf.io.gfile, which cannot write to KFP's default minio:// root")
    return spec, values, root


def submit(package, host, experiment=None, params=None, pipeline_root=None, run_name=None):
    """One run of the compiled `package` on the KFP at `host` (kfp.Client.create_run_from_pipeline_package).
    Returns the run id."""
    spec, values, root = _prepare(package, params, pipeline_root)
    name = run_name or f"{spec['pipelineInfo']['name']} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    with _api_errors(host):
        result = _client(host).create_run_from_pipeline_package(
            str(package), arguments=values, run_name=name, experiment_name=experiment, pipeline_root=root)
    return result.run_id


def schedule(package, host, cron, max_concurrency=1, experiment=None, params=None, name=None,
             pipeline_root=None):
    """A KFP recurring run of `package` on `cron` (6 fields, seconds first). Returns its id."""
    cron = validate_cron(cron)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 10:
        raise KfpError(f"max_concurrency must be an integer 1-10 (KFP's limit), got {max_concurrency!r}")
    spec, values, root = _prepare(package, params, pipeline_root)
    name = name or f"{spec['pipelineInfo']['name']} ({cron})"
    with _api_errors(host):
        client = _client(host)
        exp = client.create_experiment(experiment or "Default")
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, max_concurrency=max_concurrency,
            no_catchup=True, params=values, pipeline_package_path=str(package), pipeline_root=root)
    return job.recurring_run_id
