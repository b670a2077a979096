"""Kubeflow Pipelines' REST API (v2beta1) through kfp.Client: one run of a compiled package (submit)
or a recurring run on a cron (schedule). Every mistake that can be seen locally (package file,
parameters and the config values they set, cron, concurrency, host, token file) fails before any
request. Every request, the client's health check included, is tried once and bounded as a whole
(kubeflow/bounded_http.py): done within the timeout (connect, send, answer: not per read), its body
read up to a cap; whatever is not a JSON answer with the id asked for becomes a KfpError naming the
host, the request and, for a refusal, the HTTP status and (capped) body. The token is never shown.
"""
import contextlib
import datetime
import functools
import json
import os
import re
import urllib.parse

from collabopt.kubeflow import KfpError
from collabopt.kubeflow.compiler import load_package, run_options
from collabopt.kubeflow.run_inputs import check_config_values, parse_params, validate_cron

DEFAULT_TIMEOUT = 30.0  # seconds, each request's deadline (and its connect and read timeout)
BODY_CAP = 200  # characters of a response body shown in a message
TOKEN_ENV = "KFP_TOKEN"  # a bearer token (e.g. `kubectl create token ...`), when no token file is given


def _shown(data):
    """A response body on one line: whitespace runs as one space, at most BODY_CAP characters."""
    text = " ".join(data.decode("utf-8", "backslashreplace").split())
    return text if len(text) <= BODY_CAP else f"{text[:BODY_CAP].rstrip()}... ({len(data)} bytes)"


def _refusal(data):
    """What a refusal's body says: KFP's JSON `message`, else the body itself (shown)."""
    try:
        message = json.loads(data).get("message")
    except (ValueError, AttributeError):
        message = None
    return " ".join(message.split())[:BODY_CAP] if isinstance(message, str) and message.strip() else _shown(data)


def _transport_error(e, host, what, timeout):
    import urllib3
    reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None else e
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # refused, no such host (before ConnectTimeout:
        cause = str(reason).rpartition("Failed to establish a new connection: ")[2]  # it subclasses it)
        return f"cannot reach Kubeflow Pipelines at {host} ({what}): {cause}"
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        return f"cannot reach Kubeflow Pipelines at {host} ({what}): no connection within {timeout:g} s"
    if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return f"Kubeflow Pipelines at {host} did not answer {what} within {timeout:g} s"
    if isinstance(reason, urllib3.exceptions.ProtocolError):  # garbage instead of HTTP, connection dropped
        inner = reason.args[1] if len(reason.args) > 1 else reason
        return f"Kubeflow Pipelines at {host} gave no HTTP answer to {what}: {inner!r}"
    return f"cannot reach Kubeflow Pipelines at {host} ({what}): {type(reason).__name__}: {reason}"


@functools.lru_cache(maxsize=None)
def _bounded_rest_class():
    import urllib3
    from kfp_server_api import ApiException, rest

    from collabopt.kubeflow import bounded_http  # urllib3 too: imported with kfp, when a request is made

    class BoundedRest(rest.RESTClientObject):
        """kfp_server_api's REST client with a deadline on every request (its connect and read timeout
        too), a cap on the body it reads, no retries, and every answer that is not a 2xx JSON body
        turned into a KfpError."""

        def __init__(self, configuration, host, timeout):
            configuration.retries = urllib3.Retry(total=0, raise_on_redirect=False)  # a redirect is answered
            super().__init__(configuration)
            self.pool_manager = bounded_http.BoundedPoolManager(self.pool_manager)
            self.host, self.timeout, self.last_body = host, float(timeout), b""

        def request(self, method, url, query_params=None, headers=None, body=None, post_params=None,
                    _preload_content=True, _request_timeout=None):
            what = f"{method} {urllib.parse.urlsplit(url).path}"
            deadline = bounded_http.Deadline(self.timeout)
            try:
                with deadline:
                    r = super().request(method, url, query_params=query_params, headers=headers, body=body,
                                        post_params=post_params, _preload_content=True,
                                        _request_timeout=(self.timeout, self.timeout))
            except bounded_http.TooLarge as e:
                size = f" (Content-Length {e.length:,} bytes)" if e.length is not None else ""
                raise KfpError(f"Kubeflow Pipelines at {self.host} answered {what} with a body over "
                               f"{bounded_http.MAX_BODY_BYTES // 2 ** 20} MiB{size}: not read (is {self.host} the "
                               "KFP API endpoint?)") from None
            except ApiException as e:  # a status outside 2xx
                said = _refusal(e.body or b"")
                location = (e.headers or {}).get("Location")
                if location:
                    said = f"redirected to {location} (a sign-in page? give a token) {said}".rstrip()
                raise KfpError(f"Kubeflow Pipelines at {self.host} refused {what}: HTTP {e.status} {e.reason}: "
                               f"{said}") from None
            except urllib3.exceptions.HTTPError as e:
                if deadline.passed:  # its socket was cut: the server was still sending (slowly)
                    raise KfpError(f"Kubeflow Pipelines at {self.host} did not answer {what} within "
                                   f"{self.timeout:g} s") from None
                raise KfpError(_transport_error(e, self.host, what, self.timeout)) from None
            self.last_body = r.data
            answered = f"Kubeflow Pipelines at {self.host} answered {what} with HTTP {r.status} {r.reason}"
            try:
                json.loads(r.data.decode("utf-8"))
            except UnicodeDecodeError:
                raise KfpError(f"{answered}, a body that is not UTF-8 text: {_shown(r.data)}") from None
            except ValueError:
                kind = r.getheader("Content-Type") or "no Content-Type"
                raise KfpError(f"{answered}, a body that is not JSON ({kind}; is {self.host} the KFP API "
                               f"endpoint?): {_shown(r.data)}") from None
            return r

    return BoundedRest


@functools.lru_cache(maxsize=None)
def _client_class():
    import kfp

    class BoundedClient(kfp.Client):
        """kfp.Client whose every request, the constructor's health check included, goes through
        BoundedRest; the health check is one request (kfp's tries 5 times, 5 s apart, and loses the
        status)."""

        def __init__(self, host, timeout, **kwargs):
            self._host_named, self._timeout, self.healthz = host, timeout, None
            super().__init__(host=host, **kwargs)
            self._bound()

        def _bound(self):
            api_client = self._healthz_api.api_client  # every service API of this client shares it
            if not isinstance(api_client.rest_client, _bounded_rest_class()):
                api_client.rest_client = _bounded_rest_class()(api_client.configuration, self._host_named,
                                                               self._timeout)
            return api_client.rest_client

        def get_kfp_healthz(self, sleep_duration=5):
            self._bound()
            self.healthz = self._healthz_api.healthz_service_get_healthz()
            return self.healthz

        def last_body(self):
            return _shown(self._bound().last_body)

    return BoundedClient


def _credentials(token, token_file):
    """kfp.Client's keyword arguments for a bearer token: `token`, else the file `token_file` (read
    before each request, kfp's ServiceAccountTokenVolumeCredentials), else $KFP_TOKEN; none: none."""
    if token and token_file:
        raise KfpError("give a token or a token file, not both")
    if token_file:
        try:
            with open(token_file) as f:
                empty = not f.read().strip()
        except OSError as e:
            raise KfpError(f"token file {token_file!r}: {e.strerror}") from None
        if empty:
            raise KfpError(f"token file {token_file!r} is empty")
        from kfp.client import ServiceAccountTokenVolumeCredentials
        return {"credentials": ServiceAccountTokenVolumeCredentials(path=str(token_file))}
    token = token or os.environ.get(TOKEN_ENV)
    return {"existing_token": token} if token else {}


@contextlib.contextmanager
def _api_errors(host):
    """kfp.Client's own complaints (e.g. two experiments of one name, a field of the wrong type) as
    KfpError naming the host; BoundedRest has already turned transport failures and refusals into one."""
    import kfp_server_api
    try:
        yield
    except (ValueError, TypeError, kfp_server_api.OpenApiException) as e:
        raise KfpError(f"Kubeflow Pipelines at {host}: {e}") from e


def connect(host, timeout=DEFAULT_TIMEOUT, namespace=None, token=None, token_file=None, ssl_ca_cert=None):
    """A kfp.Client for `host` (http:// or https://) whose requests time out after `timeout` seconds
    (connect, and read), are tried once and fail as KfpError. `namespace`: the KFP profile namespace of
    a multi-user deployment (required there). Credentials: see _credentials. Makes one request, the
    health check, unless `namespace` is given."""
    import warnings
    if not re.match(r"^https?://[^/\s]+", str(host or "")):
        raise KfpError(f"host {host!r}: give the KFP API endpoint with its scheme, e.g. https://kfp.example.com")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise KfpError(f"timeout must be a number of seconds in (0, 3600], got {timeout!r}")
    kwargs = _credentials(token, token_file)
    if namespace:
        kwargs["namespace"] = namespace
    if ssl_ca_cert:
        kwargs["ssl_ca_cert"] = str(ssl_ca_cert)
    with warnings.catch_warnings(), _api_errors(host):
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2+"
        client = _client_class()(host, timeout, **kwargs)
    if client.healthz is not None and client.healthz.multi_user is True and not client.get_user_namespace():
        raise KfpError(f"Kubeflow Pipelines at {host} is multi-user: pass --namespace (your profile's namespace)")
    return client


def _answered_id(client, host, what, value, kind):
    """`value`, the id KFP answered `what` with, else KfpError (a 200 without one is no success)."""
    if not isinstance(value, str) or not value:
        raise KfpError(f"Kubeflow Pipelines at {host} answered {what} without {kind} id: {client.last_body()}")
    return value


def _experiment_id(client, host, experiment, namespace):
    exp = client.create_experiment(experiment or "Default", namespace=namespace)
    return _answered_id(client, host, "POST /apis/v2beta1/experiments", exp.experiment_id, "an experiment")


def _prepare(package, params, pipeline_root, service_account):
    """The package's spec, the run's checked parameters, pipeline root and service account (given, else
    the package's)."""
    spec = load_package(package)
    values = parse_params(params, spec)
    check_config_values(values, spec)
    root = pipeline_root or spec.get("defaultPipelineRoot")
    if not root:
        raise KfpError(f"{package}: no pipeline root: pass one (e.g. gs://bucket/root); TFX components write "
                       "their artifacts with tf.io.gfile, which cannot write to KFP's default minio:// root")
    return spec, values, root, service_account or run_options(package).get("service_account")


def submit(package, host, experiment=None, params=None, pipeline_root=None, run_name=None, *, namespace=None,
           service_account=None, timeout=DEFAULT_TIMEOUT, token=None, token_file=None, ssl_ca_cert=None):
    """One run of the compiled `package` on the KFP at `host` (kfp.Client.create_run_from_pipeline_package),
    in `namespace`, as `service_account` (default: the package's, from the config). Connection
    options: see connect. Returns the run id."""
    spec, values, root, account = _prepare(package, params, pipeline_root, service_account)
    name = run_name or f"{spec['pipelineInfo']['name']} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    client = connect(host, timeout, namespace, token, token_file, ssl_ca_cert)
    with _api_errors(host):
        exp_id = _experiment_id(client, host, experiment, namespace)
        result = client.create_run_from_pipeline_package(
            str(package), arguments=values, run_name=name, experiment_id=exp_id, pipeline_root=root,
            service_account=account)
    return _answered_id(client, host, "POST /apis/v2beta1/runs", result.run_id, "a run")


def schedule(package, host, cron, max_concurrency=1, experiment=None, params=None, name=None,
             pipeline_root=None, *, namespace=None, service_account=None, timeout=DEFAULT_TIMEOUT, token=None,
             token_file=None, ssl_ca_cert=None):
    """A KFP recurring run of `package` on `cron` (6 fields, seconds first), in its experiment of
    `namespace`, as `service_account` (default: the package's). Returns its id."""
    cron = validate_cron(cron)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 10:
        raise KfpError(f"max_concurrency must be an integer 1-10 (KFP's limit), got {max_concurrency!r}")
    spec, values, root, account = _prepare(package, params, pipeline_root, service_account)
    name = name or f"{spec['pipelineInfo']['name']} ({cron})"
    client = connect(host, timeout, namespace, token, token_file, ssl_ca_cert)
    with _api_errors(host):
        job = client.create_recurring_run(
            experiment_id=_experiment_id(client, host, experiment, namespace), job_name=name, cron_expression=cron, max_concurrency=max_concurrency,
            no_catchup=True, params=values, pipeline_package_path=str(package), pipeline_root=root,
            service_account=account)
    return _answered_id(client, host, "POST /apis/v2beta1/recurringruns", job.recurring_run_id, "a recurring run")
