"""`collabopt run` and `collabopt demo`: a config's deployment tree on the local or Beam runner."""
import os
import sys
import time

PATHS_FAILED = 3  # exit code: the run finished, some paths failed (README: exit codes)


def add_parsers(sub):
    r = sub.add_parser("run", help="run the deployment-tree paths of a config (YAML) and print the leaf table")
    r.add_argument("config", help="a YAML config, or a packaged one: demo, all_paths")
    r.add_argument("--runner", choices=("local", "beam"), default="local")
    r.add_argument("--root", default=None, help="folder for artifacts, the SQLite MLMD and report.html "
                                               "(default: runs/<name>)")
    r.add_argument("--train-limit", type=int, default=None, help="override data.train_limit (0: all)")
    r.add_argument("--eval-limit", type=int, default=None, help="override data.eval_limit (0: all)")
    r.add_argument("--no-cache", action="store_true",
                   help="execute every node (default: a node whose inputs and parameters match a finished "
                        "execution reuses its outputs, so a rerun after a crash executes only what did not finish)")
    r.set_defaults(func=run)
    d = sub.add_parser("demo", help="collabopt run demo: the PCQAT path and its PTQ references")
    d.add_argument("--runner", choices=("local", "beam"), default="local")
    d.add_argument("--root", default="runs/demo")
    d.add_argument("--no-cache", action="store_true", help="execute every node")
    d.set_defaults(func=run, config="demo", train_limit=None, eval_limit=None)


def run(args):
    from collabopt import runners
    from collabopt.cli import report
    from collabopt.core import tree_paths
    from collabopt.core.progress import duration
    from collabopt.pipelines import config as tree_config, tree

    cfg = tree_config.load(args.config)  # a bad config fails here, before anything runs
    limits = {k: v for k, v in (("train_limit", args.train_limit), ("eval_limit", args.eval_limit)) if v is not None}
    cfg = tree_config.override(cfg, {"data": limits}, source="--train-limit/--eval-limit")  # checked like the file
    root, mlmd = runners.paths(args.root or os.path.join("runs", cfg["name"]))
    pipe = tree.create_pipeline(cfg, root, mlmd, enable_cache=not args.no_cache)
    run_id = runners.new_run_id()
    print(f"collabopt run: {cfg['name']} ({len(tree_paths.expand(cfg['paths']))} leaves, {len(pipe.components)} "
          f"nodes), runner={args.runner}, root={os.path.dirname(root)}, run {run_id}"
          f"{'' if args.no_cache else ' (cache on)'}", flush=True)
    started = time.monotonic()
    runners.run(pipe, args.runner, run_id=run_id)
    print(f"collabopt run: {len(pipe.components)} nodes done in {duration(time.monotonic() - started)}", flush=True)
    leaves = report.show(mlmd, run_id=run_id)  # this run's leaves, whatever else ran on this root meanwhile
    print(f"\nreport: {os.path.join(os.path.dirname(root), 'report.html')}\nartifacts: {root}\n"
          f"ML Metadata (SQLite): {mlmd}\nagain: collabopt report --mlmd {mlmd} --run {run_id} "
          f"[--format json|html]; all runs: collabopt runs --mlmd {mlmd}", flush=True)
    failed = [l["path"] for l in leaves if l["failed"]]
    if failed:  # the run finished, the others' leaves are above: a distinct exit code, not an error
        print(f"collabopt run: finished, {len(failed)} of {len(leaves)} paths failed: {', '.join(failed)} "
              "(why: above and in the report)", file=sys.stderr, flush=True)
        raise SystemExit(PATHS_FAILED)
