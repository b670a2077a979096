"""NPUCompiler: Arm Vela for one or more Ethos-U targets; NPU estimates as MLMD properties."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec
from tfx.types.component_spec import ChannelParameter

from collabopt.components import artifacts, common, keys
from collabopt.components.npu_compiler import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class NPUCompilerSpec(component_spec.ComponentSpec):
    PARAMETERS = common.parameters(SECTION, PARAMETERS)
    INPUTS = {keys.TFLITE_MODEL_KEY: ChannelParameter(type=artifacts.TFLiteModel)}
    OUTPUTS = {keys.NPU_MODEL_KEY: ChannelParameter(type=artifacts.NPUModel)}


class NPUCompiler(base_component.BaseComponent):
    """Outputs `npu_model` (collabopt.NPUModel): Vela's output per target under `<target>/` and their
    numbers in stats.json. The first target's numbers are recorded as npu_cycles, inference_time_s,
    sram_bytes, flash_bytes, encoded_weights_bytes, npu_op_pct; every target's as `<target>.<name>`.
    In the deployment tree this is the one Vela compile of a leaf: LeafEvaluator gates on these numbers.

    Args:
      tflite_model: a fully INT8 collabopt.TFLiteModel.
      targets: Vela accelerator configs, e.g. ["ethos-u55-128", "ethos-u65-256"].
      system_config, memory_mode: Vela's --system-config / --memory-mode ("" = Vela's default).
    """
    SPEC_CLASS = NPUCompilerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, targets=D["targets"], system_config=D["system_config"],
                 memory_mode=D["memory_mode"]):
        targets = [targets] if isinstance(targets, str) else list(targets)
        super().__init__(spec=NPUCompilerSpec(
            tflite_model=tflite_model, npu_model=types.Channel(type=artifacts.NPUModel),
            **common.encode(SECTION, targets=targets, system_config=system_config, memory_mode=memory_mode)))
