"""The production flow through the `collabopt` command: compile a retraining config, schedule it and
submit it against the fake KFP API; KFP mistakes end the command with a message, not a traceback."""
import json
import re

import pytest

from collabopt import cli
from collabopt.kubeflow.compiler import load_package

from collabopt.tests.kfp_fixtures import HANG, ROOT, kfp_api, packages, spec_of  # noqa: F401 - fixtures


def test_cli_compile_schedule_a_retraining_config(kfp_api, tmp_path, capsys):
    """A config whose baseline is the newest model a TFX Pusher deployed and whose blessed leaves are
    pushed, compiled, then scheduled."""
    config = tmp_path / "retrain.yaml"
    config.write_text("name: nightly-tree\npaths: [prune_cluster_pcqat]\n"
                      "baseline: {pushed_models: gs://bucket/serving/baseline}\n"
                      "examples: {uri: gs://bucket/examples}\npush: {destination: gs://bucket/edge}\n")
    package = str(tmp_path / "nightly.yaml")
    cli.main(["compile", str(config), "-o", package, "--image", "registry.example/collabopt:0.1.0",
              "--pipeline-root", ROOT])
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"wrote {package} (nightly-tree, image registry.example/collabopt:0.1.0)"
    spec = load_package(package)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"LatestPushedModel", "Push_prune_cluster_pcqat", "Push_ptq"} <= set(tasks)
    assert "blessed" in json.dumps(tasks["Push_prune_cluster_pcqat"]["triggerPolicy"])
    assert spec["defaultPipelineRoot"] == ROOT
    assert {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()
            if "container" in ex} == {"registry.example/collabopt:0.1.0"}
    cli.main(["schedule", package, "--host", kfp_api.url, "--cron", "0 0 3 * * *", "--experiment", "retraining"])
    assert capsys.readouterr().out.splitlines()[-1] == f"created recurring run rr-1 on {kfp_api.url} (0 0 3 * * *)"
    [body] = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}} and int(body["max_concurrency"]) == 1
    assert body["pipeline_spec"] == spec_of(package)
    assert [e["display_name"] for e in kfp_api.posted("/apis/v2beta1/experiments")] == ["retraining"]
    with pytest.raises(SystemExit, match=r"^collabopt schedule: cron '0 3 \* \* \*' has 5 fields, KFP needs 6"):
        cli.main(["schedule", package, "--host", kfp_api.url, "--cron", "0 3 * * *"])
    assert len(kfp_api.posted("/apis/v2beta1/recurringruns")) == 1  # the bad cron sent nothing
    cli.main(["submit", package, "--host", kfp_api.url, "--run-name", "tonight"])
    assert capsys.readouterr().out.splitlines()[-1] == f"submitted run run-1 to {kfp_api.url}"
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "tonight" and run["runtime_config"]["pipeline_root"] == ROOT
    # MLMD resolvers compile to executors KFP's backend does not run: refused, pointing at the way out.
    config.write_text("paths: [ptq]\nbaseline: {resolve: latest_blessed}\n")
    with pytest.raises(SystemExit, match="^collabopt compile: .*compile to resolver executors"):
        cli.main(["compile", str(config), "-o", str(tmp_path / "r.yaml"), "--pipeline-root", ROOT])
    assert not (tmp_path / "r.yaml").exists()
    # A local path in a package is refused, naming the field, unless allowed.
    config.write_text("paths: [ptq]\npush: {destination: /srv/edge}\n")
    with pytest.raises(SystemExit, match=r"^collabopt compile: local path\(s\) in a KFP package: push.destination "
                                         r"'/srv/edge': .* pass --allow-local-paths .*volume$"):
        cli.main(["compile", str(config), "-o", str(tmp_path / "l.yaml"), "--pipeline-root", ROOT])
    cli.main(["compile", str(config), "-o", str(tmp_path / "l.yaml"), "--pipeline-root", ROOT, "--allow-local-paths"])
    assert load_package(str(tmp_path / "l.yaml"))["root"]["inputDefinitions"]["parameters"]["push_destination"][
        "defaultValue"] == "/srv/edge"


def test_cli_submit_with_params_namespace_and_a_token_and_no_false_success(kfp_api, packages, tmp_path, capsys,
                                                                             monkeypatch):
    package = packages["prod"][0]
    monkeypatch.setenv("KFP_TOKEN", "s3cr3t-t0ken")
    cli.main(["submit", package, "--host", kfp_api.url, "--namespace", "team-edge", "--timeout", "5",
              "--param", "qat_epochs=2", "--param", "examples_uri=gs://bucket/examples/2026-11-28"])
    assert capsys.readouterr().out.splitlines()[-1] == f"submitted run run-1 to {kfp_api.url}"
    [run] = kfp_api.posted("/apis/v2beta1/runs")
    assert run["runtime_config"]["parameters"] == {"qat_epochs": 2, "examples_uri": "gs://bucket/examples/2026-11-28"}
    assert kfp_api.posted("/apis/v2beta1/experiments") == [{"display_name": "Default", "namespace": "team-edge"}]
    # A server answering a web page with 200 is no success, and the token is in no output.
    kfp_api.script[("POST", "/apis/v2beta1/runs")] = (200, "text/html", b"<html><body>Welcome</body></html>")
    with pytest.raises(SystemExit, match="^" + re.escape(
            f"collabopt submit: Kubeflow Pipelines at {kfp_api.url} answered POST /apis/v2beta1/runs with HTTP 200 "
            f"OK, a body that is not JSON (text/html; is {kfp_api.url} the KFP API endpoint?): "
            "<html><body>Welcome</body></html>") + "$") as e:
        cli.main(["submit", package, "--host", kfp_api.url, "--namespace", "team-edge"])
    out = capsys.readouterr()
    assert "submitted run" not in out.out and "s3cr3t" not in out.out + out.err + str(e.value)
    kfp_api.script[("POST", "/apis/v2beta1/recurringruns")] = HANG
    with pytest.raises(SystemExit, match="^" + re.escape(
            f"collabopt schedule: Kubeflow Pipelines at {kfp_api.url} did not answer POST /apis/v2beta1/recurringruns "
            "within 0.5 s") + "$"):
        cli.main(["schedule", package, "--host", kfp_api.url, "--cron", "@daily", "--timeout", "0.5"])
    assert "created recurring run" not in capsys.readouterr().out
