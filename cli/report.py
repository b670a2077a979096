"""`collabopt report`: a past run's leaves from ML Metadata (nothing is recomputed)."""
import json
import os


def add_parsers(sub):
    rep = sub.add_parser("report", help="a past run's leaves from ML Metadata (nothing is recomputed)")
    where = rep.add_mutually_exclusive_group()
    where.add_argument("--root", default="runs/demo", help="a run folder (holding metadata.sqlite)")
    where.add_argument("--mlmd", default=None, help="the SQLite MLMD file")
    rep.add_argument("--pipeline-name", default=None, help="default: the newest run of any pipeline")
    rep.add_argument("--format", choices=("table", "json", "html"), default="table")
    rep.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    rep.set_defaults(func=report)


def report(args):
    show(args.mlmd or os.path.join(args.root, "metadata.sqlite"), pipeline_name=args.pipeline_name,
         fmt=args.format, output=args.output)


def show(mlmd, pipeline_name=None, fmt="table", output=None):
    """Print (or write to `output`) the leaves of the newest run in the SQLite MLMD at `mlmd`."""
    from collabopt import results

    if not os.path.isfile(mlmd):
        raise SystemExit(f"collabopt report: no ML Metadata store at {mlmd}")
    store = results.connect(mlmd)
    run = results.latest_run(store, pipeline_name)
    leaves = results.leaves(store, run)
    if fmt == "json":
        text = json.dumps(leaves, indent=1)
    elif fmt == "html":
        from collabopt.core import artifact_files, kernel_trace, report_page
        kernels = {l["path"]: kernel_trace.history(l["uri"]) for l in leaves}
        text = report_page.render([artifact_files.read_leaf(l["uri"]) for l in leaves], kernels,
                                  meta={"pipeline run": run.name, "ML Metadata": mlmd})
    elif leaves:
        text = results.leaf_table(leaves)
    else:  # a run without leaf evaluations: per-stage rows
        text = results.table(results.stage_rows(results.executions(store, run)))
    if output:
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")
    else:
        print(text)
