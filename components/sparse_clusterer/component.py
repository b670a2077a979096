"""SparseClusterer: weight clustering (k clusters) that keeps zeros zero, fine-tuned on Examples."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import common, keys
from collabopt.components.sparse_clusterer import PARAMETERS, SECTION, executor
from collabopt.schemas.defaults import DEFAULTS

D = DEFAULTS[SECTION]  # the config's defaults: one table (schemas/defaults.py)


class SparseClustererSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters(SECTION, PARAMETERS),
                  "preserve_sparsity": ExecutionParameter(type=int),  # set by the tree: after a Pruner
                  **common.DATA_PARAMETERS, **common.TRAINING_PARAMETERS, **common.fit_parameters(SECTION)}
    INPUTS = common.MODEL_STAGE_INPUTS
    OUTPUTS = {keys.CLUSTERED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class SparseClusterer(base_component.BaseComponent):
    """Outputs `clustered_model` (standard Model, stripped of clustering wrappers).

    Args:
      model, examples: the Model to cluster and the Examples it is fine-tuned on.
      number_of_clusters: k, >= 2 (with preserve_sparsity the zero is one of the k values).
      centroid_init: 'kmeans++', 'linear', 'density' or 'random'.
      preserve_sparsity: keep zeros zero (sparsity-preserving clustering, after a Pruner).
      per_channel: one set of k centroids per output channel instead of per tensor.
      exclude_layers, strict: as for Pruner (layers TFMOT cannot cluster).
      layer_clusters: {layer: clusters}: cluster only these layers, each to its own count;
        number_of_clusters is then not used.
      epochs, batch_size, learning_rate, seed: the fine-tuning.
      training: the config's `training` section (loss, metrics, eval_metric, top_k); None: defaults.
      **data_kwargs: as for Pruner.
    """
    SPEC_CLASS = SparseClustererSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 number_of_clusters=D["number_of_clusters"], centroid_init=D["centroid_init"], preserve_sparsity=True,
                 per_channel=D["per_channel"], exclude_layers=D["exclude_layers"], strict=D["strict"],
                 layer_clusters=D["layer_clusters"], epochs=D["epochs"], batch_size=D["batch_size"],
                 learning_rate=D["learning_rate"], seed=D["seed"], training=None, **data_kwargs):
        super().__init__(spec=SparseClustererSpec(
            model=model, examples=examples, preserve_sparsity=int(bool(preserve_sparsity)),
            clustered_model=types.Channel(type=standard_artifacts.Model),
            **common.encode(SECTION, number_of_clusters=number_of_clusters, centroid_init=centroid_init,
                            per_channel=per_channel, exclude_layers=list(exclude_layers), strict=strict,
                            layer_clusters=layer_clusters),
            **common.fit_params(SECTION, epochs, batch_size, learning_rate, seed), **common.data_params(**data_kwargs),
            **common.training_params(training)))
