"""`collabopt report` and `collabopt runs`: past runs from ML Metadata (nothing is recomputed)."""
import json
import os


def add_parsers(sub):
    rep = sub.add_parser("report", help="a past run's leaves from ML Metadata (nothing is recomputed)")
    _where(rep)
    rep.add_argument("--run", default=None, metavar="ID", help="this run (collabopt runs lists them; "
                                                               "default: the newest run)")
    rep.add_argument("--pipeline-name", default=None, help="default: the newest run of any pipeline")
    rep.add_argument("--format", choices=("table", "json", "html"), default="table")
    rep.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    rep.set_defaults(func=report)
    runs = sub.add_parser("runs", help="the runs in ML Metadata: id, pipeline, start, state, leaves")
    _where(runs)
    runs.add_argument("--pipeline-name", default=None, help="default: every pipeline")
    runs.set_defaults(func=list_runs)


def _where(p):
    where = p.add_mutually_exclusive_group()
    where.add_argument("--root", default="runs/demo", help="a run folder (holding metadata.sqlite)")
    where.add_argument("--mlmd", default=None, help="the SQLite MLMD file")


def _mlmd(args):
    return args.mlmd or os.path.join(args.root, "metadata.sqlite")


def _store(mlmd, command):
    from collabopt.mlmd import results
    if not os.path.isfile(mlmd):
        raise SystemExit(f"collabopt {command}: no ML Metadata store at {mlmd}")
    problem = results.not_a_store(mlmd)
    if problem:
        raise SystemExit(f"collabopt {command}: {mlmd} is not an ML Metadata store: {problem}")
    return results.connect(mlmd)


def report(args):
    show(_mlmd(args), pipeline_name=args.pipeline_name,
         fmt=args.format, output=args.output, run_id=args.run)


def list_runs(args):
    from collabopt.mlmd import results
    from collabopt import runners
    mlmd = _mlmd(args)
    store = _store(mlmd, "runs")
    summaries = results.run_summaries(store, args.pipeline_name, lease=lambda run_id: runners.lease(mlmd, run_id))
    if not summaries and args.pipeline_name:  # a filter that matches nothing is a mistake, not an empty list
        names = sorted({results.pipeline_of(store, r) or "?" for r in results.runs(store)})
        raise SystemExit(f"collabopt runs: no runs of pipeline {args.pipeline_name!r} in {mlmd} "
                         f"({'its pipelines: ' + ', '.join(names) if names else 'it holds no runs'})")
    print(results.runs_table(summaries) if summaries else f"no runs in {mlmd}")


def show(mlmd, pipeline_name=None, fmt="table", output=None, run_id=None):
    """Print (or write to `output`) the leaves of run `run_id` (default: the newest run) in the
    SQLite MLMD at `mlmd`; in a table, also the paths and nodes that failed or were abandoned, with
    why. Returns the leaves (results.leaves)."""
    from collabopt.mlmd import results

    store = _store(mlmd, "report")
    try:
        run = results.run_by_id(store, run_id) if run_id else results.latest_run(store, pipeline_name)
    except LookupError as e:
        raise SystemExit(f"collabopt report: {e}") from None
    execs = results.executions(store, run)
    leaves = results.leaves(store, run, execs)
    if fmt == "json":
        text = json.dumps(leaves, indent=1)
    elif fmt == "html":
        from collabopt.core import artifact_files
        from collabopt.core.report import kernel_trace, html_page
        kernels = {l["path"]: kernel_trace.history(l["uri"]) for l in leaves}
        text = html_page.render([artifact_files.read_leaf(l["uri"]) for l in leaves], kernels,
                                  meta={"pipeline run": run.name, "ML Metadata": mlmd})
    else:
        text = results.leaf_table(leaves) if leaves else results.table(results.stage_rows(execs))
        problems = "\n".join(filter(None, (results.failed_text(leaves), results.problems_text(execs))))
        text += f"\n\n{problems}" if problems else ""  # a run without leaf evaluations: per-stage rows above
    if output:
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")
    else:
        print(text)
    return leaves
