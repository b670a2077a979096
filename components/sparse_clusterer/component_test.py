"""SparseClusterer component: construction, encoded exec_properties, output type, parameters checked
by the config schema."""
import pytest
from tfx.types import standard_artifacts

from collabopt.components import SparseClusterer, keys
from collabopt.components.sparse_clusterer import executor
from collabopt.tests.helpers import config_error, encoded_data, encoded_training, model_stage_channels, output_types


def test_construct_with_defaults():
    clusterer = SparseClusterer(**model_stage_channels())
    assert output_types(clusterer) == {keys.CLUSTERED_MODEL_KEY: standard_artifacts.Model.TYPE_NAME}
    assert set(clusterer.inputs) == {keys.MODEL_KEY, keys.EXAMPLES_KEY}
    assert clusterer.EXECUTOR_SPEC.executor_class is executor.Executor
    assert clusterer.exec_properties == {
        "number_of_clusters": 8, "centroid_init": "kmeans++", "per_channel": "false", "preserve_sparsity": 1,
        "epochs": 1, "batch_size": 64, "learning_rate": 1e-4, "seed": 0, "exclude_layers": "[]", "strict": "false", "layer_clusters": "",
        **encoded_data(), **encoded_training()}


def test_construct_with_parameters():
    clusterer = SparseClusterer(**model_stage_channels(), number_of_clusters=16, centroid_init="linear",
                                preserve_sparsity=False, per_channel=True, epochs=2, eval_limit=50)
    assert clusterer.exec_properties == {
        "number_of_clusters": 16, "centroid_init": "linear", "per_channel": "true", "preserve_sparsity": 0,
        "epochs": 2, "batch_size": 64, "learning_rate": 1e-4, "seed": 0, "exclude_layers": "[]", "strict": "false", "layer_clusters": "",
        **encoded_data(eval_limit=50), **encoded_training()}


@pytest.mark.parametrize("params, message", [
    ({"number_of_clusters": 1}, "cluster.number_of_clusters: 1 is less than the minimum of 2"),
    ({"number_of_clusters": 2.5}, "cluster.number_of_clusters: 2.5 is not of type 'integer'"),
    ({"centroid_init": "nope"},
     "cluster.centroid_init: 'nope' is not one of ['kmeans++', 'linear', 'density', 'random']"),
    ({"per_channel": "yes"}, "cluster.per_channel: 'yes' is not of type 'boolean'"),
    ({"batch_size": 0}, "cluster.batch_size: 0 is less than the minimum of 1"),
    ({"label_key": ""}, "data.label_key: '' should be non-empty"),
])
def test_bad_parameter_is_a_config_error(params, message):
    assert config_error(SparseClusterer, **model_stage_channels(), **params) == message
