"""NPUCompiler executor: decode (and check again), call core.stages.compile_npu, record metrics."""
import json
import os

from collabopt.components import common, keys
from collabopt.components.npu_compiler import PARAMETERS, SECTION
from collabopt.core import stages
from collabopt.core.artifact_files import TFLITE_FILE

RECORDED = ("npu_cycles", "inference_time_s", "sram_bytes", "flash_bytes", "dram_bytes",
            "encoded_weights_bytes", "npu_ops", "cpu_ops", "npu_op_pct", "system_config", "memory_mode")


class Executor(common.PathStage, common.StageExecutor):
    def stage(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.NPU_MODEL_KEY)
        p = common.decode(SECTION, exec_properties, PARAMETERS)
        targets = p["targets"]
        results = stages.compile_npu(
            os.path.join(common.single_uri(input_dict, keys.TFLITE_MODEL_KEY), TFLITE_FILE), out.uri,
            accelerator_configs=targets, system_config=p["system_config"] or None,
            memory_mode=p["memory_mode"] or None)
        common.record(out, {"accelerator_config": targets[0], **{k: results[targets[0]][k] for k in RECORDED}})
        for t in targets:
            common.record(out, {k: results[t][k] for k in RECORDED}, prefix=f"{t}.")
            common.record(out, {k: json.dumps(results[t][k]) for k in (keys.PER_LAYER, keys.CPU_OPERATORS)},
                          prefix=f"{t}.")
