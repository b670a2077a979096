"""Reporter executor: decode the leaf evaluations, call core.report.run_report.write_report, record counts."""
from tfx.types import artifact_utils

from collabopt.components import common, keys
from collabopt.core.report import run_report
from collabopt.core import tree_paths


class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.REPORT_KEY)
        dirs = {p: artifact_utils.get_single_instance(input_dict[p]).uri for p in tree_paths.PATHS if input_dict.get(p)}
        leaves = run_report.write_report(dirs, out.uri, title=common.decode("report", exec_properties, ("title",))["title"],
                                         meta={"pipeline run": self._context.pipeline_run_id if self._context else "?"},
                                         publish_dir=exec_properties.get("publish_dir") or None)
        blessed = [l for l in leaves if l["blessed"]]
        failed = [l["path"] for l in leaves if l.get(keys.FAILED)]
        smallest = min(blessed, key=lambda l: l["gzip_bytes"])["path"] if blessed else ""
        common.record(out, {"leaves": len(leaves) - len(failed), "blessed_leaves": len(blessed),
                            "smallest_blessed": smallest, "failed_paths": ",".join(failed)})
