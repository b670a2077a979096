"""SparseClusterer: weight clustering that keeps the zeros of a pruned model (TFMOT experimental)."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import common
from collabopt.components.sparse_clusterer import executor
from collabopt.core.optimize import CENTROID_INITS


class SparseClustererSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "number_of_clusters": ExecutionParameter(type=int),
        "centroid_init": ExecutionParameter(type=str),
        "preserve_sparsity": ExecutionParameter(type=int),
        "per_channel": ExecutionParameter(type=int),
        **common.DATA_PARAMETERS, **common.FIT_PARAMETERS,
    }
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {"clustered_model": ChannelParameter(type=standard_artifacts.Model)}


class SparseClusterer(base_component.BaseComponent):
    """Outputs `clustered_model` (standard Model, stripped of clustering wrappers)."""
    SPEC_CLASS = SparseClustererSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, number_of_clusters=8,
                 centroid_init="kmeans++", preserve_sparsity=True, per_channel=False, epochs=1,
                 batch_size=64, learning_rate=1e-4, seed=0, **data_kwargs):
        if isinstance(number_of_clusters, bool) or not isinstance(number_of_clusters, int) \
                or number_of_clusters < 2:
            raise ValueError(f"number_of_clusters must be an integer >= 2, got {number_of_clusters!r}")
        if centroid_init not in CENTROID_INITS:
            raise ValueError(f"centroid_init must be one of {sorted(CENTROID_INITS)}, got {centroid_init!r}")
        super().__init__(spec=SparseClustererSpec(
            model=model, examples=examples, number_of_clusters=number_of_clusters,
            centroid_init=centroid_init, preserve_sparsity=int(bool(preserve_sparsity)),
            per_channel=int(bool(per_channel)),
            clustered_model=types.Channel(type=standard_artifacts.Model),
            **common.fit_params(epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs)))
