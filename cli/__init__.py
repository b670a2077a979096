"""The `collabopt` command. Heavy imports (TensorFlow, TFX) happen inside the subcommands; each
module here adds its own subcommands.

Every failure ends as one line on stderr, `collabopt <command>: <what and where>`, and a non-zero exit
code: 1 for an error, 2 for a usage error (as argparse), 130 when interrupted (Ctrl-C). A failed
pipeline run names its node. A run that finished with some paths failed exits with 3 after printing
the other leaves (the failed paths are a result, listed with why). `--debug` adds the traceback (and the ones TFX logs)."""
import argparse
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


def describe(exc):
    """What went wrong: collabopt's own errors (and file errors) in their own words, others with their
    type; a failed pipeline run's with its node (runners.NodeFailed)."""
    from collabopt.runners import NodeFailed
    if isinstance(exc, NodeFailed):
        return f"node {exc.node} failed: {describe(exc.error)}"
    text = str(exc)
    if not (type(exc).__module__.startswith("collabopt.") or isinstance(exc, OSError) or type(exc) is LookupError):
        text = f"{type(exc).__name__}: {text}" if text.strip() else type(exc).__name__
    return text


def _fail(code, line):
    line = one_line(line)
    print(line, file=sys.stderr, flush=True)
    raise Exit(code, line) from None


class _NoTraceback(logging.Filter):
    """On the command's own log handler: a record keeps its message but not its traceback (TFX logs
    some failures with logging.exception before it re-raises them; --debug shows them)."""

    def filter(self, record):
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def main(argv=None):
    p = _Parser(prog="collabopt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="on an error, print its traceback too")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.add_parsers(sub)
    for command in sub.choices.values():  # `collabopt run x --debug` as well as `collabopt --debug run x`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not args.debug:
        handler.addFilter(_NoTraceback())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    prefix = f"collabopt {args.cmd}: "
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
