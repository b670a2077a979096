"""NPUCompiler: Arm Vela for one or more Ethos-U targets; NPU estimates as MLMD properties."""
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts
from collabopt.components.npu_compiler import executor
from collabopt.core import vela


class NPUCompilerSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "accelerator_configs": ExecutionParameter(type=str),  # JSON list
        "system_config": ExecutionParameter(type=str),
        "memory_mode": ExecutionParameter(type=str),
    }
    INPUTS = {"tflite_model": ChannelParameter(type=artifacts.TFLiteModel)}
    OUTPUTS = {"npu_model": ChannelParameter(type=artifacts.NPUModel)}


class NPUCompiler(base_component.BaseComponent):
    """Outputs `npu_model` (collabopt.NPUModel). The first target's numbers are recorded as
    npu_cycles, inference_time_s, sram_bytes, flash_bytes, encoded_weights_bytes, npu_op_pct; every
    target's as `<target>.<name>`."""
    SPEC_CLASS = NPUCompilerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, accelerator_config="ethos-u55-128",
                 system_config="", memory_mode=""):
        targets = [accelerator_config] if isinstance(accelerator_config, str) else list(accelerator_config)
        valid = vela.valid_accelerator_configs()
        bad = [t for t in targets if t not in valid]
        if not targets or bad:
            raise ValueError(f"unknown accelerator_config {bad or targets!r}; valid: {', '.join(valid)}")
        super().__init__(spec=NPUCompilerSpec(
            tflite_model=tflite_model, accelerator_configs=json.dumps(targets), system_config=system_config,
            memory_mode=memory_mode, npu_model=types.Channel(type=artifacts.NPUModel)))
