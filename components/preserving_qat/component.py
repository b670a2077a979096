"""PreservingQAT: quantization-aware training that keeps what the model has (QAT/PQAT/CQAT/PCQAT)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import common
from collabopt.components.preserving_qat import executor
from collabopt.core.optimize import SCHEMES


class PreservingQATSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "scheme": ExecutionParameter(type=str),
        "shared_centroids": ExecutionParameter(type=int),
        **common.DATA_PARAMETERS, **common.FIT_PARAMETERS,
    }
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {"qat_model": ChannelParameter(type=standard_artifacts.Model)}


class PreservingQAT(base_component.BaseComponent):
    """Outputs `qat_model`: the QAT SavedModel (fake-quant ops) that TFLiteConverter turns into INT8.

    scheme="auto" picks PCQAT for a pruned+clustered model, CQAT for clustered, PQAT for pruned,
    plain QAT otherwise. shared_centroids keeps per-tensor clusters shared across channels (see
    core.optimize._shared_centroids for why TFMOT's default loses compression).
    """
    SPEC_CLASS = PreservingQATSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, scheme="auto",
                 shared_centroids=True, epochs=1, batch_size=64, learning_rate=1e-5, seed=0, **data_kwargs):
        if scheme != "auto" and scheme not in SCHEMES:
            raise ValueError(f"scheme must be 'auto' or one of {list(SCHEMES)}, got {scheme!r}")
        super().__init__(spec=PreservingQATSpec(
            model=model, examples=examples, scheme=scheme, shared_centroids=int(bool(shared_centroids)),
            qat_model=types.Channel(type=standard_artifacts.Model),
            **common.fit_params(epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs)))
