"""The `collabopt` command. Heavy imports (TensorFlow, TFX) happen inside the subcommands; each
module here adds its own subcommands.

Every failure ends as one line on stderr, `collabopt <command>: <what and where>`, and a non-zero exit
code: 1 for an error, 2 for a usage error (as argparse), 130 when interrupted (Ctrl-C). A failed
pipeline run names its node. A run that finished with some paths failed exits with 3 after printing
the other leaves (the failed paths are a result, listed with why). `--debug` adds the traceback (and the ones TFX logs)."""
import argparse
import contextlib
import logging
import re
import sys
import traceback

from collabopt.cli import kubeflow, report, run, search

COMMANDS = (run, report, kubeflow, search)
MAX_LINE = 1000  # characters of the error line; --debug prints the whole exception


class Exit(SystemExit):
    """Exit with `code` after `line` went to stderr; str() is the line."""

    def __init__(self, code, line):
        super().__init__(code)
        self.line = line

    def __str__(self):
        return self.line


class _Parser(argparse.ArgumentParser):
    """argparse, its usage errors as one line too (exit code 2)."""

    def error(self, message):
        _fail(2, f"{self.prog}: {message} (see {self.prog} --help)")


def one_line(text, limit=MAX_LINE):
    """`text` as one line of at most `limit` characters: its lines joined, any traceback in it dropped."""
    out = ""
    for line in str(text).split("Traceback (most recent call last)")[0].splitlines():
        line = " ".join(line.split())
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out if len(out) <= limit else out[:limit - 3] + "..."


def failed_node(exc):
    """The id of the pipeline node whose executor raised `exc`, else None. TFX's launcher re-raises the
    executor's own exception, so the launcher's frame (its `self` knows the node) is in the traceback."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            info = getattr(getattr(tb.tb_frame.f_locals.get("self"), "_pipeline_node", None), "node_info", None)
            if getattr(info, "id", None):
                return info.id
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc):
    """What went wrong: collabopt's own errors (and file errors) in their own words, others with their
    type; a failed pipeline run's with its node."""
    text = str(exc)
    if not (type(exc).__module__.startswith("collabopt.") or isinstance(exc, OSError) or type(exc) is LookupError):
        text = f"{type(exc).__name__}: {text}" if text.strip() else type(exc).__name__
    node = failed_node(exc)
    return f"node {node} failed: {text}" if node else text


def _fail(code, line):
    line = one_line(line)
    print(line, file=sys.stderr, flush=True)
    raise Exit(code, line) from None


@contextlib.contextmanager
def _logged_tracebacks(show):
    """Unless `show`, log records keep their message but lose their traceback (TFX logs some failures
    with logging.exception before it re-raises them)."""
    if show:
        yield
        return
    make = logging.getLogRecordFactory()

    def without_traceback(*args, **kwargs):
        record = make(*args, **kwargs)
        record.exc_info = record.exc_text = record.stack_info = None
        return record
    logging.setLogRecordFactory(without_traceback)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)


def main(argv=None):
    p = _Parser(prog="collabopt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="on an error, print its traceback too")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.add_parsers(sub)
    for command in sub.choices.values():  # `collabopt run x --debug` as well as `collabopt --debug run x`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    prefix = f"collabopt {args.cmd}: "
    with _logged_tracebacks(args.debug):
        try:
            args.func(args)
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc()
            _fail(130, prefix + "interrupted")
        except SystemExit as e:  # a subcommand's own exit: a message (exit code 1) or a code
            if isinstance(e.code, str):
                _fail(1, prefix + re.sub(r"^collabopt( [\w-]+)?: ", "", e.code))
            raise
        except Exception as e:  # noqa: BLE001 - every error ends as one line
            if args.debug:
                traceback.print_exc()
            _fail(1, prefix + describe(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
