"""The `collabopt` command. Heavy imports (TensorFlow, TFX) happen inside the subcommands."""
import argparse
import json
import logging
import sys

DEMO_NAME = "collabopt-demo"


def _demo(args):
    from collabopt import runners
    from collabopt.pipelines import pcqat

    root, mlmd = runners.paths(args.root)
    cfg = {"data": {"train_limit": 0 if args.full else args.train_limit,
                    "eval_limit": 0 if args.full else args.eval_limit}}
    pipe = pcqat.create_pipeline(DEMO_NAME, root, mlmd, cfg)
    print(f"collabopt demo: PCQAT path on Fashion-MNIST, runner={args.runner}, root={args.root}", flush=True)
    runners.run(pipe, args.runner)
    _print_report(mlmd, DEMO_NAME, "table")
    print(f"\nartifacts: {root}\nML Metadata (SQLite): {mlmd}\n"
          f"again: collabopt report --mlmd {mlmd}")


def _print_report(mlmd, pipeline_name, fmt):
    from collabopt import report
    store = report.connect(mlmd)
    rows = report.stage_rows(report.executions(store, report.latest_run(store, pipeline_name)))
    if fmt == "json":
        print(json.dumps([{k: v for k, v in r.items()} for r in rows], indent=1, default=str))
    else:
        print(report.table(rows))


def _report(args):
    _print_report(args.mlmd, args.pipeline_name, args.format)


def main(argv=None):
    p = argparse.ArgumentParser(prog="collabopt", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the PCQAT path on Fashion-MNIST and print the per-stage table")
    d.add_argument("--runner", choices=("local", "beam"), default="local")
    d.add_argument("--root", default="runs/demo", help="folder for artifacts and the SQLite MLMD")
    d.add_argument("--train-limit", type=int, default=20000)
    d.add_argument("--eval-limit", type=int, default=5000)
    d.add_argument("--full", action="store_true", help="all 60k/10k examples")
    d.set_defaults(func=_demo)
    r = sub.add_parser("report", help="print a past run's numbers from ML Metadata")
    r.add_argument("--mlmd", default="runs/demo/metadata.sqlite")
    r.add_argument("--pipeline-name", default=None)
    r.add_argument("--format", choices=("table", "json"), default="table")
    r.set_defaults(func=_report)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
