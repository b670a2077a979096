"""Runs are first-class: `collabopt run` prints its own run's leaves (two runs at once on one root
included), `collabopt report --run ID` shows that run, `collabopt runs` lists them with their state,
and a failed node keeps its error message, which the report shows."""
import os

import pytest
import yaml

from collabopt.mlmd import results
from collabopt import runners
from collabopt.cli import main
from collabopt.pipelines import tree
from collabopt.tests.cli_processes import Command, printed_table, run_id

pytestmark = pytest.mark.slow  # real pipelines: the full suite, not the fast tier

SMALL = {"paths": ["ptq"], "data": {"train_limit": 300, "eval_limit": 100},
         "baseline": {"epochs": 1, "width": 16, "blocks": 1}}


def cli(capsys, *argv):
    main(list(argv))
    return capsys.readouterr().out


def test_concurrent_runs_on_one_root_each_print_and_report_their_own_leaves(tmp_path, capsys):
    root = tmp_path / "root"
    targets = {"a": "ethos-u55-128", "b": "ethos-u65-256"}  # their tables differ in a column's name
    commands = {}
    for name, target in targets.items():  # one pipeline, two configs, started together
        config = {**SMALL, "name": "shared", "npu": {"targets": [target]}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        commands[name] = Command(["run", str(tmp_path / f"{name}.yaml"), "--root", str(root)], tmp_path / f"{name}.log")
    logs = {}
    for name, command in commands.items():
        code, logs[name] = command.wait()
        assert code == 0, logs[name][-3000:]
    ids = {name: run_id(log) for name, log in logs.items()}
    assert ids["a"] != ids["b"]
    mlmd = str(root / "metadata.sqlite")
    store = results.connect(mlmd)
    a, b = (results.run_by_id(store, ids[n]) for n in "ab")
    assert a.create_time_since_epoch < b.custom_properties[results.RUN_ENDED].int_value
    assert b.create_time_since_epoch < a.custom_properties[results.RUN_ENDED].int_value  # they overlapped
    for name, target in targets.items():
        table = printed_table(logs[name])
        assert f"{target} cycles" in table[0] and [r.split()[0] for r in table[1:]] == ["ptq"], table
        assert cli(capsys, "report", "--root", str(root), "--run", ids[name]).splitlines() == table
    listing = cli(capsys, "runs", "--root", str(root)).splitlines()
    assert listing[0].split() == ["run", "pipeline", "started", "state", "leaves", "failed", "/", "abandoned"]
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert set(rows) == set(ids.values())
    assert all(row[1] == "shared" and row[4:] == ["complete", "1", "-"] for row in rows.values())
    with pytest.raises(SystemExit, match="no run 'nope'.*collabopt runs lists them"):
        main(["report", "--root", str(root), "--run", "nope"])


def test_a_failed_node_keeps_its_error_and_the_report_shows_it(tmp_path, examples_uri, capsys):
    empty = tmp_path / "pushed"
    empty.mkdir()
    config = {**SMALL, "name": "fails", "examples": {"uri": examples_uri}, "baseline": {"pushed_models": str(empty)}}
    root, mlmd = runners.paths(tmp_path / "root")
    with pytest.raises(Exception, match="no pushed model in"):
        runners.run(tree.create_pipeline(config, root, mlmd))
    store = results.connect(mlmd)
    failed = {e["node"]: e for e in results.executions(store)}["LatestPushedModel"]
    assert failed["state"] == "FAILED" and failed["reason"].startswith("ModelError: no pushed model in ")
    assert results.run_state(store, results.latest_run(store)) == "failed"
    report = cli(capsys, "report", "--mlmd", mlmd)
    assert f"FAILED LatestPushedModel: ModelError: no pushed model in {str(empty)!r}" in report
    [row] = cli(capsys, "runs", "--mlmd", mlmd).splitlines()[1:]
    assert row.split()[1:] == ["fails", *row.split()[2:4], "failed", "0", "LatestPushedModel"]
    assert not os.listdir(os.path.join(os.path.dirname(mlmd), ".runs"))  # the lock went with the run


def test_the_cache_is_on_for_cli_runs_and_off_where_the_output_depends_on_more_than_the_inputs(tmp_path):
    """`collabopt run` caches (--no-cache turns it off); LatestPushedModel never: the same parameters
    find a newer model once one is pushed."""
    config = {**SMALL, "name": "cache", "baseline": {"pushed_models": str(tmp_path)}}
    root, mlmd = runners.paths(tmp_path / "root")
    for enabled in (True, False):
        pipe = tree.create_pipeline(config, root, mlmd, enable_cache=enabled)
        ir = runners._compile(pipe, "some-run")  # noqa: SLF001
        caching = {n.pipeline_node.node_info.id: n.pipeline_node.execution_options.caching_options.enable_cache
                   for n in ir.nodes}
        assert caching.pop("LatestPushedModel") is False
        assert set(caching.values()) == {enabled}
        assert "some-run" in str(ir.runtime_spec.pipeline_run_id)  # the run id we gave, not TFX's own
