"""kfp.Client against a fake KFP v2beta1 API on 127.0.0.1 that records every request: what submit and
schedule send (the compiled spec, parameters, pipeline root, cron, concurrency), and that every
mistake visible locally fails before any request while API failures name the host and status."""
import json
import re
import socket

import pytest
import yaml

from collabopt.kubeflow import KfpError, client

from collabopt.tests.kfp_fixtures import ROOT, kfp_api, packages, param_package, spec_of  # noqa: F401


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
    with pytest.raises(KfpError, match="takes no parameters"):
        client.submit(demo, kfp_api.url, params={"epochs": 3})
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
    kfp_api.fail_next = (503, "the pipeline store is unavailable")
    with pytest.raises(KfpError, match=f"{re.escape(kfp_api.url)} refused the request: HTTP 503.*store is unavailable"):
        client.submit(packages["demo"][0], kfp_api.url)
