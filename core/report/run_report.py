"""The run's HTML report, written from its leaf evaluations (one leaf.json per path)."""
import os

from collabopt.core.artifact_files import LEAVES_FILE, REPORT_FILE, read_leaf, write_json
from collabopt.core.report import kernel_trace


def write_report(evaluation_dirs, out_dir, *, title="collabopt optimization report", meta=None, publish_dir=None):
    """The run's HTML report from its leaf evaluations ({path: evaluation dir}); also copied to
    publish_dir (e.g. next to the pipeline root). Returns the leaf dicts."""
    from collabopt.core.report import html_page  # matplotlib only where it is used

    leaves, kernels = [], {}
    for path, d in evaluation_dirs.items():
        leaves.append(read_leaf(d))
        layer, history = kernel_trace.history(d)
        if layer:
            kernels[path] = (layer, history)
    page = html_page.render(leaves, kernels, title=title, meta=meta)
    os.makedirs(out_dir, exist_ok=True)
    for folder in filter(None, (out_dir, publish_dir)):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, REPORT_FILE), "w") as f:
            f.write(page)
    write_json(os.path.join(out_dir, LEAVES_FILE), [{k: v for k, v in l.items() if k != "layers"} for l in leaves])
    return leaves


