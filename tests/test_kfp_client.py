"""kfp.Client against a fake KFP v2beta1 API on 127.0.0.1 that records every request: what submit and
schedule send (the compiled spec, parameters, pipeline root, cron, concurrency, namespace, service
account, token), that every mistake visible locally fails before any request, and that an API that
hangs, answers garbage, HTML, a 200 without an id, or refuses fails within the timeout with the
status and what it said."""
import json
import re
import socket
import time

import kfp  # noqa: F401 - imported here, so no test's timing includes importing it
import pytest
import yaml

from collabopt.kubeflow import KfpError, client

from collabopt.kubeflow import bounded_http
from collabopt.tests.kfp_fixtures import (GARBAGE, HANG, ROOT, drip, huge, kfp_api, packages,  # noqa: F401
                                          param_package, spec_of)

API = "/apis/v2beta1/"


def test_submit_sends_the_compiled_spec_and_the_pipeline_root(kfp_api, packages):
    package = packages["demo"][0]
    run_id = client.submit(package, kfp_api.url, experiment="collabopt", run_name="demo run",
                           pipeline_root="gs://bucket/runs")
    assert run_id == "run-1"
    calls = [(r["method"], r["path"]) for r in kfp_api.requests]
    assert calls == [("GET", "/apis/v2beta1/healthz"), ("GET", "/apis/v2beta1/experiments"),
                     ("POST", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/runs")]
    assert json.loads(kfp_api.requests[1]["query"]["filter"])["predicates"][0]["stringValue"] == "collabopt"
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "demo run" and run["experiment_id"] == "exp-1"
    assert run["pipeline_spec"] == spec_of(package)  # byte for byte the compiled PipelineSpec
    assert run["runtime_config"] == {"parameters": {}, "pipeline_root": "gs://bucket/runs"}
    # Without --pipeline-root the package's default is sent; the experiment now exists and is reused.
    client.submit(package, kfp_api.url, experiment="collabopt")
    assert len(kfp_api.posted("/apis/v2beta1/experiments")) == 1
    second = kfp_api.posted("/apis/v2beta1/runs")[1]
    assert second["runtime_config"]["pipeline_root"] == ROOT and second["experiment_id"] == "exp-1"
    assert second["display_name"].startswith("collabopt-demo ")


def test_submit_sends_typed_parameters(kfp_api, param_package):
    client.submit(param_package, kfp_api.url, params=["model_uri=gs://bucket/models/v2"])
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["runtime_config"]["parameters"] == {"model_uri": "gs://bucket/models/v2"}
    assert kfp_api.posted("/apis/v2beta1/experiments")[0]["display_name"] == "Default"


def test_schedule_creates_a_recurring_run(kfp_api, packages, param_package):
    rr = client.schedule(packages["demo"][0], kfp_api.url, "0 0 3 * * *", experiment="retraining")
    assert rr == "rr-1"
    [body] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 1 and body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "collabopt-demo (0 0 3 * * *)"
    assert body["pipeline_spec"] == spec_of(packages["demo"][0])
    assert body["runtime_config"] == {"parameters": {}, "pipeline_root": ROOT}
    client.schedule(param_package, kfp_api.url, "@every 12h", max_concurrency=3, name="nightly",
                    params={"model_uri": "gs://bucket/m"}, pipeline_root="gs://other/root")
    body = kfp_api.posted("/apis/v2beta1/recurringruns")[1]
    assert body["trigger"]["cron_schedule"]["cron"] == "@every 12h" and int(body["max_concurrency"]) == 3
    assert body["display_name"] == "nightly"
    assert body["runtime_config"] == {"parameters": {"model_uri": "gs://bucket/m"}, "pipeline_root": "gs://other/root"}


@pytest.mark.parametrize("cron, message", [
    ("0 3 * * *", "5 fields, KFP needs 6.*did you mean '0 0 3 \\* \\* \\*'"),
    ("0 0 25 * * *", "hour field: 25 is outside 0-23"),
    ("0 0 3 * * MONDAY", "day of week field: 'MONDAY' is not a number"),
    ("0 */0 * * * *", "step '0' must be a positive integer"),
    ("0 0 5-3 * * *", "range '5-3' runs backwards"),
    ("@fortnightly", "unknown descriptor"),
    ("", "0 fields"),
])
def test_bad_cron_fails_before_any_request(kfp_api, packages, cron, message):
    with pytest.raises(KfpError, match=message):
        client.schedule(packages["demo"][0], kfp_api.url, cron)
    assert kfp_api.requests == []


@pytest.mark.parametrize("cron, sent", [
    *((c, c) for c in ("0 0 3 * * *", "*/30 * * * * ?", "0 0 9 ? * MON-FRI", "0 15,45 8-18/2 1 JAN,jul *",
                       "@daily", "@every 1h30m")),
    ("  0 0 3 * * *\n", "0 0 3 * * *"),  # pasted with blanks: KFP gets it without them
])
def test_valid_crons_reach_kfp_as_written(kfp_api, packages, cron, sent):
    assert client.schedule(packages["demo"][0], kfp_api.url, cron) == "rr-1"
    [body] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": sent}}
    assert body["display_name"] == f"collabopt-demo ({sent})"


def test_local_mistakes_fail_before_any_request(kfp_api, packages, param_package, tmp_path):
    demo = packages["demo"][0]
    with pytest.raises(KfpError, match="does not exist"):
        client.submit(str(tmp_path / "nope.yaml"), kfp_api.url)
    with pytest.raises(KfpError, match="does not exist"):
        client.schedule(str(tmp_path / "nope.yaml"), kfp_api.url, "0 0 3 * * *")
    with pytest.raises(KfpError, match="expected NAME=VALUE"):
        client.submit(param_package, kfp_api.url, params=["model_uri"])
    with pytest.raises(KfpError, match=r"unknown pipeline parameter\(s\) \['epochs'\]; this package takes model_uri"):
        client.submit(param_package, kfp_api.url, params=["epochs=3"])
    with pytest.raises(KfpError, match=re.escape("unknown pipeline parameter(s) ['epochs']; this package takes "
                                                 "baseline_epochs, cluster_epochs, data_eval_limit, data_train_limit, "
                                                 "prune_epochs, qat_epochs, requirements")):
        client.submit(demo, kfp_api.url, params={"epochs": 3})
    # A parameter that sets a config key gets the config schema's message (the executor checks it again).
    for param, message in (("prune_epochs=0", "--param prune_epochs=0: prune.epochs: 0 is less than the minimum of 1"),
                           ("data_train_limit=-5", "--param data_train_limit=-5: data.train_limit: -5 is less than "
                                                   "the minimum of 0"),
                           ('requirements={"max_gzip_bytes": 0}', "--param requirements='{\"max_gzip_bytes\": 0}': "
                                                                  "requirements.max_gzip_bytes: 0 is less than the "
                                                                  "minimum of 1"),
                           ("requirements=tiny", "--param requirements='tiny': requirements: not JSON (Expecting "
                                                 "value: line 1 column 1 (char 0))"),
                           ("qat_epochs=two", "parameter qat_epochs='two': not a valid NUMBER_INTEGER")):
        with pytest.raises(KfpError, match=f"^{re.escape(message)}$"):
            client.submit(demo, kfp_api.url, params=[param])
    for host in ("kfp.example.com", "", "http://"):
        with pytest.raises(KfpError, match="give the KFP API endpoint with its scheme"):
            client.submit(demo, host)
    for timeout in (0, -1, True, "30"):
        with pytest.raises(KfpError, match=r"timeout must be a number of seconds in \(0, 3600\]"):
            client.submit(demo, kfp_api.url, timeout=timeout)
    with pytest.raises(KfpError, match=f"token file '{tmp_path}/none': No such file or directory"):
        client.submit(demo, kfp_api.url, token_file=str(tmp_path / "none"))
    for bad in (0, 11, "2"):
        with pytest.raises(KfpError, match="max_concurrency must be an integer 1-10"):
            client.schedule(demo, kfp_api.url, "0 0 3 * * *", max_concurrency=bad)
    spec = spec_of(demo)
    del spec["defaultPipelineRoot"]
    (tmp_path / "rootless.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(KfpError, match="no pipeline root"):
        client.submit(str(tmp_path / "rootless.yaml"), kfp_api.url)
    assert kfp_api.requests == []


def test_unreachable_host_is_named(packages):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    for call in (lambda: client.submit(packages["demo"][0], host),
                 lambda: client.schedule(packages["demo"][0], host, "0 0 3 * * *")):
        refused = re.escape(f"cannot reach Kubeflow Pipelines at {host}") + ".*[Cc]onnection refused"
        with pytest.raises(KfpError, match=refused):
            call()


def test_api_refusal_is_reported_with_its_status(kfp_api, packages):
    kfp_api.script[("POST", API + "experiments")] = (503, "application/json", json.dumps(
        {"error": "the pipeline store is unavailable", "code": 14, "message": "the pipeline store is unavailable"}
    ).encode())
    message, _ = _failure(lambda: client.submit(packages["demo"][0], kfp_api.url))
    assert message == (f"Kubeflow Pipelines at {kfp_api.url} refused POST /apis/v2beta1/experiments: HTTP 503 "
                       "Service Unavailable: the pipeline store is unavailable")
    assert kfp_api.posted(API + "runs") == []


SUBMIT_REQUESTS = [("GET", API + "healthz"), ("GET", API + "experiments"), ("POST", API + "experiments"),
                   ("POST", API + "runs")]
# seconds: every failure below comes within TIMEOUT + MARGIN. The margin is generous (under load a 1 s
# timeout took 2.5 s to surface): what it tells apart is a hang, which would last HANG_LIMIT (60 s).
TIMEOUT, MARGIN = 1.0, 9.0
SIGN_IN = b"<!DOCTYPE html>\n<html>\n  <head><title>Sign in</title></head>\n  <body>" + b"x" * 400 + b"</body>\n</html>\n"


def _failure(call):
    """The KfpError message of `call`, and how long it took to come."""
    started = time.monotonic()
    with pytest.raises(KfpError) as e:
        call()
    return str(e.value), time.monotonic() - started


@pytest.mark.parametrize("route, behaviour, said", [
    (("GET", "healthz"), HANG, "did not answer GET /apis/v2beta1/healthz within 1 s"),
    (("POST", "runs"), HANG, "did not answer POST /apis/v2beta1/runs within 1 s"),
    (("GET", "healthz"), GARBAGE,
     "gave no HTTP answer to GET /apis/v2beta1/healthz: BadStatusLine('\\x00ÿþ not HTTP\\r\\n')"),
    (("GET", "healthz"), (200, "text/html", SIGN_IN),
     "answered GET /apis/v2beta1/healthz with HTTP 200 OK, a body that is not JSON (text/html; is {url} the KFP "
     "API endpoint?): <!DOCTYPE html> <html> <head><title>Sign in</title></head> <body>" + "x" * 135 + "... (485 bytes)"),
    (("POST", "runs"), (200, "text/html", b"<html>ok</html>"),
     "answered POST /apis/v2beta1/runs with HTTP 200 OK, a body that is not JSON (text/html; is {url} the KFP API "
     "endpoint?): <html>ok</html>"),
    (("POST", "runs"), (200, "application/json", b'{"run": "\xff\xfe"}'),
     "answered POST /apis/v2beta1/runs with HTTP 200 OK, a body that is not UTF-8 text: {\"run\": \"\\xff\\xfe\"}"),
    (("POST", "runs"), (200, "application/json", b'{"state": "PENDING"}'),
     'answered POST /apis/v2beta1/runs without a run id: {"state": "PENDING"}'),
    (("POST", "experiments"), (200, "application/json", b"{}"),
     "answered POST /apis/v2beta1/experiments without an experiment id: {}"),
    (("GET", "healthz"), (500, "text/plain", b"upstream connect error or disconnect/reset before headers"),
     "refused GET /apis/v2beta1/healthz: HTTP 500 Internal Server Error: upstream connect error or "
     "disconnect/reset before headers"),
    (("POST", "runs"), (403, "application/json", json.dumps({"code": 7, "message": "User 'ci@example.com' is not "
                                                             "authorized to create runs in namespace 'kubeflow'"}).encode()),
     "refused POST /apis/v2beta1/runs: HTTP 403 Forbidden: User 'ci@example.com' is not authorized to create runs "
     "in namespace 'kubeflow'"),
    (("POST", "runs"), (403, "text/plain", b"RBAC: access denied " * 30),
     "refused POST /apis/v2beta1/runs: HTTP 403 Forbidden: " + ("RBAC: access denied " * 10).strip() + "... (600 bytes)"),
    (("GET", "healthz"), (302, "text/html", b""),
     "refused GET /apis/v2beta1/healthz: HTTP 302 Found: "),
], ids=["hang-healthz", "hang-run", "garbage", "html-healthz", "html-run", "not-utf8", "no-run-id",
        "no-experiment-id", "500", "403-json", "403-capped", "302"])
def test_a_misbehaving_api_fails_within_the_timeout_with_what_it_said(kfp_api, packages, route, behaviour, said):
    method, path = route
    kfp_api.script[(method, API + path)] = behaviour
    package = packages["demo"][0]  # compiled (once, on first use) before the clock starts
    message, elapsed = _failure(lambda: client.submit(package, kfp_api.url, timeout=TIMEOUT))
    assert message == f"Kubeflow Pipelines at {kfp_api.url} " + said.replace("{url}", kfp_api.url)
    assert elapsed <= TIMEOUT + MARGIN, elapsed
    sent = [(r["method"], r["path"]) for r in kfp_api.requests]  # nothing after the failing request
    assert sent == SUBMIT_REQUESTS[:SUBMIT_REQUESTS.index((method, API + path)) + 1]


def test_a_schedule_without_an_id_or_an_answer_is_no_success(kfp_api, packages):
    demo = packages["demo"][0]
    kfp_api.script[("POST", API + "recurringruns")] = (200, "application/json", b'{"status": "ENABLED"}')
    message, _ = _failure(lambda: client.schedule(demo, kfp_api.url, "@daily", timeout=TIMEOUT))
    assert message == (f"Kubeflow Pipelines at {kfp_api.url} answered POST /apis/v2beta1/recurringruns without a "
                       'recurring run id: {"status": "ENABLED"}')
    kfp_api.script[("POST", API + "recurringruns")] = HANG
    message, elapsed = _failure(lambda: client.schedule(demo, kfp_api.url, "@daily", timeout=TIMEOUT))
    assert message == f"Kubeflow Pipelines at {kfp_api.url} did not answer POST /apis/v2beta1/recurringruns within 1 s"
    assert elapsed <= TIMEOUT + MARGIN, elapsed


def test_a_multi_user_kfp_needs_a_namespace(kfp_api, packages):
    kfp_api.multi_user = True
    message, _ = _failure(lambda: client.submit(packages["demo"][0], kfp_api.url))
    assert message == f"Kubeflow Pipelines at {kfp_api.url} is multi-user: pass --namespace (your profile's namespace)"
    assert [r["path"] for r in kfp_api.requests] == [API + "healthz"]


def test_submit_sends_parameters_namespace_service_account_and_token(kfp_api, packages, monkeypatch, capsys):
    """A production package: its pipeline parameters set with --param, into a profile namespace, as the
    config's service account, with a bearer token from $KFP_TOKEN."""
    path, spec = packages["prod"]
    monkeypatch.setenv("KFP_TOKEN", "s3cr3t-t0ken")
    run_id = client.submit(path, kfp_api.url, experiment="nightly", namespace="team-edge", params=[
        "prune_epochs=3", "data_train_limit=500", 'requirements={"max_gzip_bytes": 20000}',
        "push_destination=gs://other/edge"])
    assert run_id == "run-1"
    assert [(r["method"], r["path"]) for r in kfp_api.requests] == [  # a namespace given: no health check
        ("GET", API + "experiments"), ("POST", API + "experiments"), ("POST", API + "runs")]
    assert kfp_api.requests[0]["query"]["namespace"] == "team-edge"
    assert kfp_api.posted(API + "experiments") == [{"display_name": "nightly", "namespace": "team-edge"}]
    assert {r["authorization"] for r in kfp_api.requests} == {"Bearer s3cr3t-t0ken"}
    [run] = kfp_api.posted(API + "runs")
    assert run["runtime_config"]["parameters"] == {"prune_epochs": 3, "data_train_limit": 500,
                                                   "requirements": '{"max_gzip_bytes": 20000}',
                                                   "push_destination": "gs://other/edge"}
    assert run["service_account"] == "collabopt-runner"  # the config's kubeflow.service_account
    # The package's platform spec (node selectors) travels with its pipeline spec.
    assert run["pipeline_spec"] == {"pipeline_spec": spec_of(path), "platform_spec": spec_of(path, 1)}
    assert "s3cr3t" not in capsys.readouterr().out
    client.submit(path, kfp_api.url, experiment="nightly", namespace="team-edge", service_account="other-sa")
    assert kfp_api.posted(API + "runs")[1]["service_account"] == "other-sa"
    assert len(kfp_api.posted(API + "experiments")) == 1  # found in its namespace


def test_schedule_sends_namespace_and_a_token_file(kfp_api, packages, tmp_path):
    token = tmp_path / "token"
    token.write_text("projected-sa-token\n")
    client.schedule(packages["prod"][0], kfp_api.url, "@daily", namespace="team-edge", token_file=str(token),
                    params={"data_eval_limit": 1000})
    assert {r["authorization"] for r in kfp_api.requests} == {"Bearer projected-sa-token"}
    [body] = kfp_api.posted(API + "recurringruns")
    assert body["runtime_config"]["parameters"] == {"data_eval_limit": 1000}
    assert body["service_account"] == "collabopt-runner"
    assert kfp_api.posted(API + "experiments") == [{"display_name": "Default", "namespace": "team-edge"}]


def test_a_server_that_answers_a_byte_at_a_time_is_cut_at_the_timeout(kfp_api, packages):
    """One byte every 0.4 s never trips a per-read timeout of 1 s; the request's deadline cuts it."""
    kfp_api.script[("GET", API + "healthz")] = drip(0.4)
    package = packages["demo"][0]
    message, elapsed = _failure(lambda: client.submit(package, kfp_api.url, timeout=TIMEOUT))
    assert message == f"Kubeflow Pipelines at {kfp_api.url} did not answer GET /apis/v2beta1/healthz within 1 s"
    assert elapsed <= TIMEOUT + MARGIN, elapsed
    assert [r["path"] for r in kfp_api.requests] == [API + "healthz"]


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_a_huge_answer_is_refused_not_read_whole(kfp_api, packages, announced):
    """An answer over the cap is one line, not a timeout, and is not held in memory: with a
    Content-Length it is refused unread, without one reading stops at the cap."""
    size = bounded_http.MAX_BODY_BYTES + (1 << 20)
    kfp_api.script[("POST", API + "runs")] = huge(size, announced)
    package = packages["demo"][0]
    message, elapsed = _failure(lambda: client.submit(package, kfp_api.url, timeout=30))
    length = f" (Content-Length {size:,} bytes)" if announced else ""
    assert message == (f"Kubeflow Pipelines at {kfp_api.url} answered POST /apis/v2beta1/runs with a body over 32 MiB"
                       f"{length}: not read (is {kfp_api.url} the KFP API endpoint?)")
    assert elapsed < 30


def test_a_slow_but_steady_answer_within_the_timeout_is_read(kfp_api, packages):
    """The deadline is for the whole request, not less: a health check dripped over ~0.9 s, within a
    5 s timeout, is answered."""
    kfp_api.script[("GET", API + "healthz")] = drip(0.01)
    assert client.submit(packages["demo"][0], kfp_api.url, timeout=5) == "run-1"
