"""NPUCompiler executor: decode, call core.stages.compile_npu, record metrics."""
import json
import os

from collabopt.components import common
from collabopt.core import artifact_files, stages

_KEYS = ("npu_cycles", "inference_time_s", "sram_bytes", "flash_bytes", "dram_bytes",
         "encoded_weights_bytes", "npu_ops", "cpu_ops", "npu_op_pct", "system_config")


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "npu_model")
        targets = json.loads(exec_properties["accelerator_configs"])
        results = stages.compile_npu(
            os.path.join(common.single_uri(input_dict, "tflite_model"), artifact_files.TFLITE_FILE), out.uri,
            accelerator_configs=targets, system_config=exec_properties.get("system_config") or None,
            memory_mode=exec_properties.get("memory_mode") or None)
        common.record(out, {"accelerator_config": targets[0], **{k: results[targets[0]][k] for k in _KEYS}})
        for t in targets:
            common.record(out, {k: results[t][k] for k in _KEYS}, prefix=f"{t}.")
