"""The `collabopt` command. Heavy imports (TensorFlow, TFX) happen inside the subcommands; each
module here adds its own subcommands."""
import argparse
import logging
import sys

from collabopt.cli import kubeflow, report, run

COMMANDS = (run, report, kubeflow)


def main(argv=None):
    p = argparse.ArgumentParser(prog="collabopt", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in COMMANDS:
        module.add_parsers(sub)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.func(args)
    except Exception as e:  # noqa: BLE001 - config and KFP errors are for people, not tracebacks
        from collabopt.kubeflow import KfpError
        from collabopt.schemas import ConfigError
        if isinstance(e, (ConfigError, KfpError)):
            raise SystemExit(f"collabopt {args.cmd}: {e}") from None
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
