"""Pruner: magnitude pruning of a Keras model to a target sparsity (or M:N), fine-tuned on Examples."""
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import common
from collabopt.components.pruner import executor


class PrunerSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "target_sparsity": ExecutionParameter(type=float),
        "schedule": ExecutionParameter(type=str),
        "frequency": ExecutionParameter(type=int),
        "m_by_n": ExecutionParameter(type=str),  # JSON [M, N] or ""
        **common.DATA_PARAMETERS, **common.FIT_PARAMETERS,
    }
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {"pruned_model": ChannelParameter(type=standard_artifacts.Model)}


class Pruner(base_component.BaseComponent):
    """Outputs `pruned_model` (standard Model: SavedModel under Format-Serving/, stripped of wrappers)."""
    SPEC_CLASS = PrunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, target_sparsity=0.5,
                 schedule="polynomial", frequency=100, m_by_n=None, epochs=2, batch_size=64,
                 learning_rate=1e-4, seed=0, **data_kwargs):
        if m_by_n is None:
            if not isinstance(target_sparsity, (int, float)) or not 0 < target_sparsity < 1:
                raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity!r}")
        elif len(m_by_n) != 2 or not 0 < int(m_by_n[0]) < int(m_by_n[1]):
            raise ValueError(f"m_by_n must be (M, N) with 0 < M < N, e.g. (2, 4); got {m_by_n!r}")
        if schedule not in ("constant", "polynomial"):
            raise ValueError(f"schedule must be 'constant' or 'polynomial', got {schedule!r}")
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1 (steps), got {frequency!r}")
        super().__init__(spec=PrunerSpec(
            model=model, examples=examples, target_sparsity=float(target_sparsity), schedule=schedule,
            frequency=frequency, m_by_n=json.dumps(list(m_by_n)) if m_by_n else "",
            pruned_model=types.Channel(type=standard_artifacts.Model),
            **common.fit_params(epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs)))
