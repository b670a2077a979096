"""Orchestration overhead: the PCQAT path as a plain script calling collabopt.core.stages vs the same
path as a TFX pipeline on LocalDagRunner and on BeamDagRunner.

All three variants get the same imported baseline SavedModel and Examples folder (prepared once
here), the same data limits, seeds, epochs and learning rates, and do the same work: the pipeline
of `paths: [prune_cluster_pcqat]` also builds the `ptq` reference leaf and a report, so the script
does too (prune -> sparsity-preserving cluster -> PCQAT -> to_tflite -> evaluate_leaf -> compile_npu,
and to_tflite -> evaluate_leaf -> compile_npu of the baseline, then report). Each run is a fresh
child process (`python overhead.py --child ...`), so interpreter start-up and imports (TensorFlow,
TFMOT, and TFX for the pipelines) count in every variant; the variants alternate in every round
(order rotated per round) so machine noise hits all of them alike. Reports the medians, the per-round
ratios and their median (the target: <= 1.15x), and where the time goes: the script's per-stage
times next to each component's time from its MLMD execution (registered -> published), start-up +
imports, the TFX import, building the DSL, the orchestration around the stages and the process exit.
Since every variant runs the same core.stages code, the seconds a runner adds outside the stages
(median) give a second, less noise-prone ratio. A variant over the target gets one more run under
cProfile, and the TFX import is broken down with `python -X importtime`.

    .venv/bin/python benchmarks/overhead.py                     # defaults: 5 rounds, ~20 min on 2 cores
    .venv/bin/python benchmarks/overhead.py --rounds 1 --train-limit 500 --eval-limit 200   # smoke test
    .venv/bin/python benchmarks/overhead.py --train-limit 20000 --eval-limit 5000 --rounds 5  # demo-sized
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from collabopt.benchmarks import common  # noqa: E402

VARIANTS = ("script", "local", "beam")
T0_ENV = "COLLABOPT_BENCH_T0"  # wall-clock time the parent spawned the child (start-up is counted)
PROFILE_ENV = "COLLABOPT_BENCH_PROFILE"  # set: the pipeline child runs under cProfile
# The pipeline's node ids for the script's stages (same work, same order of dependencies).
STAGES = (("Pruner", "prune"), ("SparseClusterer", "cluster"), ("PCQAT", "preserving_qat"),
          ("Convert_ptq", "to_tflite ptq"), ("Evaluate_ptq", "evaluate_leaf ptq"), ("NPU_ptq", "compile_npu ptq"),
          ("Convert_prune_cluster_pcqat", "to_tflite pcqat"), ("Evaluate_prune_cluster_pcqat", "evaluate_leaf pcqat"),
          ("NPU_prune_cluster_pcqat", "compile_npu pcqat"), ("Reporter", "report"))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train-limit", type=int, default=5000, help="train images (the Examples folder holds these)")
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--baseline-epochs", type=int, default=2)
    ap.add_argument("--prune-epochs", type=int, default=2)
    ap.add_argument("--cluster-epochs", type=int, default=1)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--clusters", type=int, default=8)
    ap.add_argument("--targets", default="ethos-u55-128")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="one extra LocalDagRunner run under cProfile (auto: if a ratio is above 1.15x)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/overhead)")
    # internal: one run in a child process
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def pipeline_config(s):
    """The tree config of the PCQAT path; the script mirrors every value."""
    return {
        "name": "overhead-pcqat",
        "paths": ["prune_cluster_pcqat"],
        "baseline": {"model_uri": s["baseline"]},
        "examples": {"uri": s["examples"]},
        "data": {"feature_shape": [28, 28, 1], "train_limit": 0, "eval_limit": 0},
        "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "epochs": s["prune_epochs"],
                  "learning_rate": 1e-4},
        "cluster": {"number_of_clusters": s["clusters"], "centroid_init": "kmeans++", "epochs": s["cluster_epochs"],
                    "learning_rate": 1e-4},
        "qat": {"scheme": "auto", "epochs": s["qat_epochs"], "learning_rate": 1e-5},
        "convert": {"representative_samples": 200},
        "npu": {"targets": s["targets"]},
        "beam_pipeline_args": ["--direct_running_mode=in_memory"],
    }


# ------------------------------------------------------------------------------ child processes

def child_script(s, work, times):
    from collabopt.core import artifact_files, stages
    from collabopt.core.evaluation import leaf_evaluation
    from collabopt.core.report import run_report
    cfg = pipeline_config(s)
    spec = stages.DataSpec(s["examples"], feature_shape=tuple(cfg["data"]["feature_shape"]))
    fit = lambda section: stages.FitSpec(epochs=cfg[section]["epochs"], batch_size=64,  # noqa: E731
                                         learning_rate=cfg[section]["learning_rate"], seed=0)
    d = lambda name: os.path.join(work, name)  # noqa: E731
    base, targets, rep = s["baseline"], cfg["npu"]["targets"], cfg["convert"]["representative_samples"]

    def timed(name, fn, *args, **kw):
        t = time.perf_counter()
        fn(*args, **kw)
        times[name] = time.perf_counter() - t

    timed("prune", stages.prune, base, spec, d("pruned"), target_sparsity=0.5, schedule="polynomial",
          frequency=100, m_by_n=None, fit=fit("prune"))
    timed("cluster", stages.cluster, d("pruned"), spec, d("clustered"), number_of_clusters=s["clusters"],
          centroid_init="kmeans++", preserve_sparsity=True, per_channel=False, fit=fit("cluster"))
    timed("preserving_qat", stages.preserving_qat, d("clustered"), spec, d("pcqat"), scheme="auto",
          shared_centroids=True, fit=fit("qat"))
    evals = {}
    for leaf, short, model in (("ptq", "ptq", base), ("prune_cluster_pcqat", "pcqat", d("pcqat"))):
        timed(f"to_tflite {short}", stages.to_tflite, model, spec, d(f"tflite_{short}"), representative_samples=rep)
        evals[leaf] = d(f"eval_{short}")
        timed(f"evaluate_leaf {short}", leaf_evaluation.evaluate_leaf, leaf, d(f"tflite_{short}"), model, spec, evals[leaf],
              npu_targets=targets, system_config=None, requirements={},
              baseline_dir=None if leaf == "ptq" else evals["ptq"])
        # blessed (no requirements), so the pipeline's Cond compiles it for the NPU
        timed(f"compile_npu {short}", stages.compile_npu, os.path.join(d(f"tflite_{short}"), artifact_files.TFLITE_FILE),
              d(f"npu_{short}"), accelerator_configs=targets, system_config=None, memory_mode=None)
    timed("report", run_report.write_report, evals, d("report"), title="collabopt optimization report", publish_dir=work)


def child_pipeline(s, work, runner, times):
    prof = None
    if os.environ.get(PROFILE_ENV):
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    # What create_pipeline and runners.run import lazily, imported here to time it apart from the DSL.
    from tfx.dsl.components.common import importer  # noqa: F401
    from tfx.dsl.experimental.conditionals import conditional  # noqa: F401
    from tfx.orchestration import metadata, pipeline  # noqa: F401
    if runner == "local":
        from tfx.orchestration.local import local_dag_runner  # noqa: F401
    else:
        from tfx.orchestration.beam import beam_dag_runner  # noqa: F401

    from collabopt import components, runners  # noqa: F401
    from collabopt.pipelines import tree
    times["import tfx"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline_root, mlmd = runners.paths(work)
    pipe = tree.create_pipeline(pipeline_config(s), pipeline_root, mlmd)
    times["create_pipeline"] = time.perf_counter() - t
    runners.run(pipe, runner)
    if prof:
        prof.disable()
        prof.dump_stats(os.path.join(work, "profile.pstats"))


# (file suffix, function) -> what it is; cumulative seconds from cProfile of one pipeline run
PROFILE_POINTS = (
    (("/pipelines/tree.py", "create_pipeline"), "create_pipeline (builds the DSL)"),
    (("/runners.py", "run"), "runners.run: the whole run"),
    (("tfx/dsl/compiler/compiler.py", "compile"), "  compile the pipeline to IR"),
    (("tfx/orchestration/portable/launcher.py", "launch"), "  all component launches"),
    (("tfx/orchestration/portable/launcher.py", "_prepare_execution"),
     "  input resolution + registering executions (MLMD)"),
    (("tfx/orchestration/portable/launcher.py", "_run_executor"), "  running executors"),
    (("/components/*/executor.py", "Do"), "    of which collabopt executors' Do (the work)"),
    (("tfx/orchestration/portable/launcher.py", "_publish_successful_execution"), "  publishing outputs (MLMD)"),
)


IMPORT_TFX = """
from collabopt.core import evaluate, stages
import this  # a marker (prints the Zen to the captured stdout): what follows is what a pipeline run adds
from tfx.dsl.components.common import importer
from tfx.dsl.experimental.conditionals import conditional
from tfx.orchestration import metadata, pipeline
from tfx.orchestration.local import local_dag_runner
from tfx.orchestration.beam import beam_dag_runner
from collabopt import components, runners
"""


def import_profile():
    """`python -X importtime` of the TFX imports a pipeline run adds to what the script imports:
    seconds per top-level package, and the import chain of the heaviest TFX module."""
    import re
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT_TFX], capture_output=True, text=True,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(1)) / 1e6, int(m.group(2)) / 1e6, len(m.group(3)) // 2, m.group(4)))
    after = rows[[r[3] for r in rows].index("this") + 1:]
    by_pkg = {}
    for own, _, _, name in after:
        by_pkg[name.split(".")[0]] = by_pkg.get(name.split(".")[0], 0.0) + own
    # The heaviest chain: importtime prints a module after its children (one level deeper).
    chain, lo, hi, level = [], 0, len(after), min((r[2] for r in after), default=0)
    while True:
        cands = [i for i in range(lo, hi) if after[i][2] == level]
        if not cands:
            break
        i = max(cands, key=lambda j: after[j][1])
        if after[i][1] < 0.5:
            break
        chain.append(f"{after[i][3]} ({after[i][1]:.1f} s)")
        lo, hi, level = max([j for j in cands if j < i], default=lo - 1) + 1, i, level + 1
    return {"total_s": sum(r[0] for r in after), "by_package_s": dict(sorted(by_pkg.items(), key=lambda kv: -kv[1])[:10]),
            "heaviest_chain": chain}


def profile_summary(path):
    """Cumulative seconds at the PROFILE_POINTS, and the top TFX/MLMD functions by own time."""
    import fnmatch
    import pstats
    st = pstats.Stats(path).stats
    rows = []
    for (pattern, func), label in PROFILE_POINTS:
        ct = sum(v[3] for (f, _, fn), v in st.items() if fn == func and fnmatch.fnmatch(f, "*" + pattern))
        rows.append({"point": label, "cumulative_s": ct})
    run, launches = rows[1]["cumulative_s"], rows[3]["cumulative_s"]
    rows.insert(3, {"point": "  runner machinery outside the component launches", "cumulative_s": run - launches})
    own = sorted(((v[2], f"{f.split('site-packages/')[-1]}:{fn}") for (f, _, fn), v in st.items()
                  if any(m in f for m in ("/tfx/", "/ml_metadata/", "/apache_beam/", "/absl/"))), reverse=True)[:10]
    return {"points": rows, "top_own_time": [{"function": n, "own_s": t} for t, n in own]}


def child(a):
    t_spawn = float(os.environ[T0_ENV])
    t = time.perf_counter()
    from collabopt.core import stages  # noqa: F401  (TensorFlow, TFMOT: what every variant imports)
    imports = time.perf_counter() - t
    with open(a.setup) as f:
        s = json.load(f)
    times = {}
    t_work = time.time()
    if a.child == "script":
        child_script(s, a.work, times)
    else:
        child_pipeline(s, a.work, a.child, times)
    common.write_json(os.path.join(a.work, "child.json"), {
        "variant": a.child, "startup_and_imports_s": t_work - t_spawn, "import_tf_tfmot_s": imports,
        "work_s": time.time() - t_work, "times": times, "work_started": t_work})


# ------------------------------------------------------------------------------ parent

def mlmd_times(mlmd):
    """{node: seconds from execution registration to its last update}, plus the span of the run."""
    from collabopt.mlmd import results
    store = results.connect(mlmd)
    run = results.latest_run(store)
    out, first, last = {}, None, None
    for ex in store.get_executions_by_context(run.id):
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(ex.id)
                     if store.get_context_types_by_id([c.type_id])[0].name == "node"), ex.name)
        out[node] = (ex.last_update_time_since_epoch - ex.create_time_since_epoch) / 1000.0
        first = min(first or ex.create_time_since_epoch, ex.create_time_since_epoch)
        last = max(last or 0, ex.last_update_time_since_epoch)
    return out, first / 1000.0, last / 1000.0


def run_child(variant, a, setup_path, work, profile=False):
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    env = {**os.environ, T0_ENV: repr(time.time()), "TF_USE_LEGACY_KERAS": "1",
           **({PROFILE_ENV: "1"} if profile else {})}
    t = time.perf_counter()
    with open(os.path.join(work, "log.txt"), "w") as log:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", variant, "--work", work,
                               "--setup", setup_path], env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{variant} run failed (exit {proc.returncode}); see {work}/log.txt")
    with open(os.path.join(work, "child.json")) as f:
        res = json.load(f)
    res["wall_s"] = wall
    if variant != "script":
        comp, first, last = mlmd_times(os.path.join(work, "metadata.sqlite"))
        res["component_s"] = comp
        res["before_first_execution_s"] = first - res["work_started"]  # compile, connect MLMD, first resolution
        res["executions_span_s"] = last - first
    return res


def med(xs):
    return statistics.median(xs) if xs else None


def prepare(a, out):
    from collabopt.core.model import baseline
    data_dir = os.path.join(out, "data")
    if os.path.isdir(data_dir):
        shutil.rmtree(data_dir)
    examples = common.write_fashion_mnist(os.path.join(data_dir, "examples"), train_limit=a.train_limit,
                                          eval_limit=a.eval_limit)
    base = common.train_baseline(baseline.ds_cnn(), examples, os.path.join(data_dir, "baseline"),
                                 feature_shape=(28, 28, 1), epochs=a.baseline_epochs, final_lr_epochs=0)
    s = {"examples": examples, "baseline": os.path.join(data_dir, "baseline"), "prune_epochs": a.prune_epochs,
         "cluster_epochs": a.cluster_epochs, "qat_epochs": a.qat_epochs, "clusters": a.clusters,
         "targets": a.targets.split(","), "baseline_metrics": base}
    return common.write_json(os.path.join(data_dir, "setup.json"), s), s


def summarize(runs, variants):
    by = {v: [r for r in runs if r["variant"] == v] for v in variants}
    walls = {v: [r["wall_s"] for r in by[v]] for v in variants}
    rounds = max(r["round"] for r in runs) + 1
    ratios = {}
    for v in variants:
        if v == "script" or "script" not in variants:
            continue
        per = []
        for i in range(rounds):
            s = [r["wall_s"] for r in by["script"] if r["round"] == i]
            p = [r["wall_s"] for r in by[v] if r["round"] == i]
            if s and p:
                per.append(p[0] / s[0])
        # The stages run the same core.stages code in every variant, so their times differ only by machine
        # noise; what the runner adds is everything else (start-up, TFX import, DSL, orchestration, exit).
        extra = med([non_stage_s(r) for r in by[v]]) - med([non_stage_s(r) for r in by["script"]])
        ratios[v] = {"per_round": per, "median_of_pairs": med(per),
                     "ratio_of_medians": med(walls[v]) / med(walls["script"]),
                     "added_s": extra, "ratio_from_added": (med(walls["script"]) + extra) / med(walls["script"])}
    return {"median_wall_s": {v: med(walls[v]) for v in variants}, "wall_s": walls, "ratios": ratios}


def non_stage_s(r):
    """A run's wall seconds outside its ten stages/components."""
    parts = run_parts(r)
    return r["wall_s"] - sum(parts[stage] for _, stage in STAGES)


def run_parts(r):
    """One run's seconds by part: each stage, start-up, TFX import, DSL, orchestration, exit."""
    pipeline = r["variant"] != "script"
    parts = {}
    for node, stage in STAGES:
        parts[stage] = (r.get("component_s", {}).get(node) if pipeline else r["times"].get(stage)) or 0.0
    parts["importers"] = sum(t for n, t in r.get("component_s", {}).items() if n.endswith("Importer"))
    parts["startup"] = r["startup_and_imports_s"]
    parts["import tfx"] = r["times"].get("import tfx", 0.0)
    parts["create_pipeline"] = r["times"].get("create_pipeline", 0.0)
    # what the child spent working but not inside a stage/component, an import or the DSL
    parts["orchestration"] = r["work_s"] - sum(v for k, v in parts.items() if k != "startup")
    parts["exit"] = r["wall_s"] - r["startup_and_imports_s"] - r["work_s"]  # interpreter shutdown
    return parts


PART_LABELS = {"importers": "importers (ExamplesImporter, BaselineImporter)",
               "startup": "process start-up + TF/TFMOT imports",
               "import tfx": "import TFX (+ collabopt.components, the runner)",
               "create_pipeline": "create_pipeline (build the DSL)",
               "orchestration": "orchestration around the stages (runner, MLMD, input resolution, publishing; "
                                "for the script: its glue)",
               "exit": "process exit (interpreter shutdown)"}


def breakdown(runs, variants):
    """Median over runs of each part's seconds, per variant (medians do not add up to the median wall)."""
    parts = {v: [run_parts(r) for r in runs if r["variant"] == v] for v in variants}
    rows = [{"stage": f"{stage} / {node}", **{v: med([p[stage] for p in parts[v]]) for v in variants}}
            for node, stage in STAGES]
    rows += [{"stage": label, **{v: med([p[key] for p in parts[v]]) for v in variants}}
             for key, label in PART_LABELS.items()]
    rows.append({"stage": "**total wall (median)**",
                 **{v: med([r["wall_s"] for r in runs if r["variant"] == v]) for v in variants}})
    return rows


def main(argv=None):
    a = parse_args(argv)
    if a.child:
        return child(a)
    out = common.results_dir("overhead", a.out)
    meta = common.provenance(a)
    variants = a.variants.split(",")
    setup_path, setup = prepare(a, out)
    print(f"baseline: {setup['baseline_metrics']}", flush=True)
    runs = []
    for i in range(a.rounds):
        order = variants[i % len(variants):] + variants[:i % len(variants)]  # rotate: no variant always first
        for v in order:
            res = run_child(v, a, setup_path, os.path.join(out, "runs", f"{i}_{v}"))
            res["round"] = i
            runs.append(res)
            print(f"round {i} {v}: {res['wall_s']:.1f} s (start-up+imports {res['startup_and_imports_s']:.1f} s)",
                  flush=True)
            common.write_json(os.path.join(out, "overhead.json"), {**meta, "setup": setup, "runs": runs})
    summary = summarize(runs, variants)
    rows = breakdown(runs, variants)
    verdict = {v: {"ratio": r["median_of_pairs"], "target": 1.15, "ok": r["median_of_pairs"] <= 1.15}
               for v, r in summary["ratios"].items()}
    profile = {}
    for v, x in verdict.items():  # one extra run of each pipeline variant over the target, under cProfile
        if a.profile == "always" or (a.profile == "auto" and not x["ok"]):
            work = os.path.join(out, "runs", f"profile_{v}")
            run_child(v, a, setup_path, work, profile=True)
            profile[v] = profile_summary(os.path.join(work, "profile.pstats"))
    imports = import_profile() if profile else None
    common.write_json(os.path.join(out, "overhead.json"), {**meta, "setup": setup, "runs": runs, "summary": summary,
                                                          "breakdown": rows, "verdict": verdict, "profile": profile,
                                                          "tfx_import_profile": imports})
    plot(runs, rows, variants, os.path.join(out, "overhead.png"))

    print(f"\nPCQAT path + ptq reference leaf, {a.train_limit:,} train / {a.eval_limit:,} eval images, epochs "
          f"prune {a.prune_epochs} / cluster {a.cluster_epochs} / PCQAT {a.qat_epochs}, {a.rounds} rounds\n")
    head = ["variant", "wall per round (s)", "median (s)", "ratio to script per round", "median of pairs",
            "ratio of medians", "added outside the stages (s)", "ratio from that alone"]
    table = []
    for v in variants:
        r = summary["ratios"].get(v)
        table.append([v, ", ".join(f"{w:.1f}" for w in summary["wall_s"][v]), f"{summary['median_wall_s'][v]:.1f}",
                      ", ".join(f"{x:.3f}" for x in r["per_round"]) if r else "-",
                      f"**{r['median_of_pairs']:.3f}x**" if r else "1", f"{r['ratio_of_medians']:.3f}x" if r else "1",
                      f"{r['added_s']:+.1f}" if r else "-", f"{r['ratio_from_added']:.3f}x" if r else "1"])
    print(common.md_table(head, table))
    print("\nWhere the time goes (median seconds per run):\n")
    print(common.md_table(["stage / pipeline node", *variants],
                          [[r["stage"], *(f"{r[v]:.1f}" if r[v] is not None else "-" for v in variants)]
                           for r in rows]))
    for v, x in verdict.items():
        print(f"\n{v}: {x['ratio']:.3f}x the plain script -> {'MET' if x['ok'] else 'MISSED'} (target <= 1.15x)")
    if profile:
        names = list(profile)
        print(f"\nOne extra run of {', '.join(names)} under cProfile (cumulative seconds; cProfile slows "
              f"Python-heavy code):\n")
        points = [p["point"] for p in profile[names[0]]["points"]]
        print(common.md_table(["where", *names],
                              [[pt, *(f"{profile[n]['points'][i]['cumulative_s']:.1f}" for n in names)]
                               for i, pt in enumerate(points)]))
        for n in names:
            print(f"\n{n}: top TFX/MLMD/Beam/absl functions by own time: " + "; ".join(
                f"{t['function']} {t['own_s']:.2f} s" for t in profile[n]["top_own_time"][:6]))
        print(f"\nImporting TFX after what the script imports (python -X importtime, one process): "
              f"{imports['total_s']:.1f} s; by package: " + ", ".join(
                  f"{k} {v:.2f} s" for k, v in imports["by_package_s"].items()))
        print("heaviest import chain: " + " -> ".join(imports["heaviest_chain"]))
    print(f"\n{meta['command']}  ({meta['date']}, commit {meta['commit']})\nresults: {out}/overhead.json, overhead.png")


def plot(runs, rows, variants, path):
    plt = common.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 2]})
    for j, v in enumerate(variants):
        w = [r["wall_s"] for r in runs if r["variant"] == v]
        ax1.scatter([j] * len(w), w, color=f"C{j}")
        ax1.hlines(statistics.median(w), j - 0.25, j + 0.25, color=f"C{j}")
    ax1.set_xticks(range(len(variants)))
    ax1.set_xticklabels(variants)
    ax1.set_ylabel("wall seconds per run (child process)")
    ax1.set_title("runs (line: median)")
    parts = [r for r in rows if not r["stage"].startswith("**")]
    bottom = [0.0] * len(variants)
    for k, r in enumerate(parts):
        vals = [max(r[v] or 0.0, 0.0) for v in variants]
        ax2.barh(variants, vals, left=bottom, color=plt.cm.tab20(k % 20), label=r["stage"][:60])
        bottom = [b + x for b, x in zip(bottom, vals)]
    ax2.set_xlabel("median seconds")
    ax2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax2.set_title("where the time goes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
