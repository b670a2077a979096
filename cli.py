"""The `collabopt` command. Heavy imports (TensorFlow, TFX) happen inside the subcommands."""
import argparse
import json
import logging
import os
import sys


def _run(args):
    from collabopt import runners
    from collabopt.core import tree_paths
    from collabopt.pipelines import config as tree_config, tree

    cfg = tree_config.load(args.config)  # a bad config fails here, before anything runs
    root, mlmd = runners.paths(args.root or os.path.join("runs", cfg["name"]))
    if args.train_limit is not None:
        cfg["data"]["train_limit"] = args.train_limit
    if args.eval_limit is not None:
        cfg["data"]["eval_limit"] = args.eval_limit
    pipe = tree.create_pipeline(cfg, root, mlmd)
    print(f"collabopt run: {cfg['name']} ({len(tree_paths.expand(cfg['paths']))} leaves), runner={args.runner}, "
          f"root={os.path.dirname(root)}", flush=True)
    runners.run(pipe, args.runner)
    _report(argparse.Namespace(mlmd=mlmd, root=None, pipeline_name=cfg["name"], format="table", output=None))
    print(f"\nreport: {os.path.join(os.path.dirname(root), 'report.html')}\nartifacts: {root}\n"
          f"ML Metadata (SQLite): {mlmd}\nagain: collabopt report --mlmd {mlmd} [--format json|html]")


def _report(args):
    from collabopt import results

    mlmd = args.mlmd or os.path.join(args.root, "metadata.sqlite")
    if not os.path.isfile(mlmd):
        raise SystemExit(f"collabopt report: no ML Metadata store at {mlmd}")
    store = results.connect(mlmd)
    run = results.latest_run(store, args.pipeline_name)
    leaves = results.leaves(store, run)
    if args.format == "json":
        text = json.dumps(leaves, indent=1)
    elif args.format == "html":
        from collabopt.core import artifact_files, kernel_trace, report_page
        kernels = {l["path"]: kernel_trace.history(l["uri"]) for l in leaves}
        text = report_page.render([artifact_files.read_leaf(l["uri"]) for l in leaves], kernels,
                                  meta={"pipeline run": run.name, "ML Metadata": mlmd})
    elif leaves:
        text = results.leaf_table(leaves)
    else:  # a run without leaf evaluations: per-stage rows
        text = results.table(results.stage_rows(results.executions(store, run)))
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}")
    else:
        print(text)


def _compile(args):
    from collabopt.kubeflow import compiler
    from collabopt.pipelines import config as tree_config, tree

    cfg = tree_config.load(args.config)
    # No local MLMD and no local report folder: on KFP the launcher records MLMD, the root is remote.
    pipe = tree.create_pipeline(cfg, args.pipeline_root or "", metadata_path=None, publish_dir="")
    compiler.compile_pipeline(pipe, args.output, image=args.image, pipeline_root=args.pipeline_root)
    print(f"wrote {args.output} ({cfg['name']}, image {args.image or compiler.default_image()})")


def _submit(args):
    from collabopt.kubeflow import client
    run_id = client.submit(args.package, args.host, experiment=args.experiment, params=args.param,
                           pipeline_root=args.pipeline_root, run_name=args.run_name)
    print(f"submitted run {run_id} to {args.host}")


def _schedule(args):
    from collabopt.kubeflow import client
    job_id = client.schedule(args.package, args.host, args.cron, max_concurrency=args.max_concurrency,
                             experiment=args.experiment, params=args.param, name=args.name,
                             pipeline_root=args.pipeline_root)
    print(f"created recurring run {job_id} on {args.host} ({args.cron})")


def _kfp_args(sub, name, help_text, func):
    p = sub.add_parser(name, help=help_text)
    p.add_argument("package", help="a compiled pipeline (collabopt compile ... --output pipeline.yaml)")
    p.add_argument("--host", required=True, help="the KFP API endpoint, e.g. http://localhost:8080")
    p.add_argument("--experiment", default=None)
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a pipeline parameter (repeatable)")
    p.add_argument("--pipeline-root", default=None, help="default: the one compiled into the package")
    p.set_defaults(func=func)
    return p


def main(argv=None):
    p = argparse.ArgumentParser(prog="collabopt", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the deployment-tree paths of a config (YAML) and print the leaf table")
    r.add_argument("config", help="a YAML config, or a packaged one: demo, all_paths")
    r.add_argument("--runner", choices=("local", "beam"), default="local")
    r.add_argument("--root", default=None, help="folder for artifacts, the SQLite MLMD and report.html "
                                               "(default: runs/<name>)")
    r.add_argument("--train-limit", type=int, default=None, help="override data.train_limit (0: all)")
    r.add_argument("--eval-limit", type=int, default=None, help="override data.eval_limit (0: all)")
    r.set_defaults(func=_run)
    d = sub.add_parser("demo", help="collabopt run demo: the PCQAT path and its PTQ references")
    d.add_argument("--runner", choices=("local", "beam"), default="local")
    d.add_argument("--root", default="runs/demo")
    d.set_defaults(func=_run, config="demo", train_limit=None, eval_limit=None)
    rep = sub.add_parser("report", help="a past run's leaves from ML Metadata (nothing is recomputed)")
    where = rep.add_mutually_exclusive_group()
    where.add_argument("--root", default="runs/demo", help="a run folder (holding metadata.sqlite)")
    where.add_argument("--mlmd", default=None, help="the SQLite MLMD file")
    rep.add_argument("--pipeline-name", default=None, help="default: the newest run of any pipeline")
    rep.add_argument("--format", choices=("table", "json", "html"), default="table")
    rep.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    rep.set_defaults(func=_report)
    c = sub.add_parser("compile", help="compile a config to a Kubeflow Pipelines (v2) package")
    c.add_argument("config", help="a YAML config, or a packaged one: demo, all_paths")
    c.add_argument("--output", "-o", required=True, help="the package, e.g. pipeline.yaml")
    c.add_argument("--image", default=None, help="the component image (default collabopt:<version>)")
    c.add_argument("--pipeline-root", default=None, help="e.g. gs://bucket/root (default root of its runs)")
    c.set_defaults(func=_compile)
    s = _kfp_args(sub, "submit", "run a compiled package once on Kubeflow Pipelines", _submit)
    s.add_argument("--run-name", default=None)
    s = _kfp_args(sub, "schedule", "run a compiled package on a cron (a KFP recurring run)", _schedule)
    s.add_argument("--cron", required=True, help="6 fields, seconds first: '0 0 3 * * *' is 03:00 daily")
    s.add_argument("--max-concurrency", type=int, default=1)
    s.add_argument("--name", default=None, help="the recurring run's name")
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
