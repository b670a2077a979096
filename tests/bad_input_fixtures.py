"""What the bad-input matrix modules share: an earlier run whose results must stay intact, the CLI run
as a user runs it with its one-line error checked, and the cases as a table. Import the fixtures by
name into a test module: `from collabopt.tests.bad_input_fixtures import earlier`."""
import contextlib
import dataclasses
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import yaml

from collabopt import cli
from collabopt.tests.helpers import fashion_mnist_examples, tiny_model

EARLIER = "earlier"  # the earlier run's pipeline name; the failing runs are named otherwise
INTERRUPTED = 130


@dataclasses.dataclass
class Earlier:
    """A finished run: its folder, SQLite MLMD, good Examples and a good model, and what it left."""
    root: str
    mlmd: str
    examples: str
    model: str
    files: dict
    report: str


def write(path, content):
    """A file holding `content` (a dict as YAML, str or bytes); returns its path."""
    if isinstance(content, dict):
        content = yaml.safe_dump(content)
    with open(path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return str(path)


def files(root):
    """{path under root: sha256} of every file."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def report_json(mlmd, pipeline):
    """`collabopt report --format json` of the newest run of `pipeline`, from its MLMD."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["report", "--mlmd", mlmd, "--pipeline-name", pipeline, "--format", "json"])
    return out.getvalue()


def report(mlmd):
    """`collabopt report --format json` of the earlier run, from its MLMD."""
    return report_json(mlmd, EARLIER)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """paths [ptq] on 300/100 Fashion-MNIST images, a one-epoch baseline, run by `collabopt run`."""
    d = tmp_path_factory.mktemp("earlier")
    examples = fashion_mnist_examples(d / "examples", 300, 100)
    config = write(d / "earlier.yaml", {"name": EARLIER, "paths": ["ptq"], "examples": {"uri": examples},
                                        "data": {"train_limit": 300, "eval_limit": 100},
                                        "baseline": {"epochs": 1, "width": 16, "blocks": 1},
                                        "npu": {"targets": ["ethos-u55-128"]}})
    root = str(d / "run")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["run", config, "--root", root]) == 0
    mlmd = os.path.join(root, "metadata.sqlite")
    return Earlier(root, mlmd, examples, tiny_model(d / "model"), files(root), report(mlmd))


def assert_intact(earlier, before=None, rewritten=()):
    """The earlier run's files (but its MLMD file, which later runs in its folder add to, and those in
    `rewritten`: a later run that succeeds publishes its report.html there) and its MLMD report are as
    it left them; with `before` (files() of its folder before the command), nothing in the folder
    changed at all: the command failed before it ran anything."""
    now = files(earlier.root)
    if before is not None:
        assert now == before
    kept = [k for k in earlier.files if k not in ("metadata.sqlite", *rewritten)]
    assert {k: now.get(k) for k in kept} == {k: earlier.files[k] for k in kept}
    assert report(earlier.mlmd) == earlier.report


def matches(line, expected):
    """`line` is `expected`, where '…' stands for any text."""
    return re.fullmatch(".*".join(re.escape(p) for p in expected.split("…")), line, re.S) is not None


@dataclasses.dataclass
class Case:
    """One bad input: `make(earlier, tmp_path)` writes it and returns (argv, {name: path}); the command
    fails with `code` and the one line `expected` ('…' for any text, {name} for those paths)."""
    id: str
    make: object
    expected: str
    code: int = 1


def check(case, earlier, tmp_path, capsys, caplog, untouched=True):
    """Run the case's command in this process; assert the exit code, exactly one line on stderr (the
    expected one), no traceback anywhere (stdout, stderr, the log), the earlier run intact (`untouched`:
    its folder not changed at all)."""
    argv, names = case.make(earlier, tmp_path)
    before = files(earlier.root) if untouched else None
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    expected = case.expected.format(**{k: str(v) for k, v in names.items()})
    assert err.splitlines() == [err.strip()] and matches(err.strip(), expected), f"{err!r}\nexpected {expected!r}"
    assert e.value.code == case.code
    assert "Traceback" not in out + err + caplog.text and not any(r.exc_info for r in caplog.records)
    assert_intact(earlier, before)


def _sigint_as_on_a_terminal():
    """SIGINT at its default in the command, as a terminal starts it: a shell's background job (and so
    a CI job or a `nohup ... &` test run) starts with SIGINT ignored, an ignored signal stays ignored
    across exec, and Python then installs no KeyboardInterrupt handler: Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def collabopt(*argv, interrupt_after=None, timeout=300):
    """`python -m collabopt.cli <argv>` in a fresh interpreter: (exit code, stdout, stderr). With
    `interrupt_after` (a regex), Ctrl-C (SIGINT) once a line of stderr matches it: the phase is an event
    the process reports, not a time; a process that ends before it fails the test, naming the phase.
    `timeout` only catches a hang: a loaded machine (the full suite on two workers, importing
    TensorFlow in each process) can take minutes to reach a phase."""
    p = subprocess.Popen([sys.executable, "-m", "collabopt.cli", *map(str, argv)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
                         preexec_fn=_sigint_as_on_a_terminal)
    out, err = [], []
    drain = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    watchdog = threading.Timer(timeout, p.kill)  # nothing hangs: a hung command fails the test
    drain.start()
    watchdog.start()
    try:
        for line in p.stderr:
            err.append(line)
            if interrupt_after and re.search(interrupt_after, line):
                p.send_signal(signal.SIGINT)
                interrupt_after = None
        code = p.wait()
    finally:
        watchdog.cancel()
    drain.join(10)
    assert code != -signal.SIGKILL, f"collabopt {' '.join(map(str, argv))} did not finish in {timeout} s:\n{''.join(err)}"
    assert interrupt_after is None, f"collabopt ended (exit code {code}) before {interrupt_after!r}:\n{''.join(err)[-3000:]}"
    return code, "".join(out), "".join(err)


def assert_one_line(code, out, err, expected_code, cmd, expected):
    """A real process's error: its exit code; the last line of stderr is the one `collabopt <cmd>:`
    line (before it only log lines), as expected; no traceback anywhere."""
    lines = err.splitlines()
    assert code == expected_code, err[-3000:]
    assert [line for line in lines if line.startswith("collabopt ")] == lines[-1:], err[-3000:]
    assert lines[-1].startswith(f"collabopt {cmd}: ") and matches(lines[-1], expected), lines[-1]
    assert "Traceback" not in out + err
