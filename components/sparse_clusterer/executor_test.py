"""SparseClusterer executor with hand-built artifacts: a sparse model (as a Pruner leaves it) in, a
clustered SavedModel that keeps its zeros, its promises and kernel trace out; bad parameters fail
before any work."""
import os

import numpy as np
import pytest

from collabopt.components import SparseClusterer, keys
from collabopt.components.sparse_clusterer.executor import Executor
from collabopt.core.model import keras_io
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, kernel_history, read_json, run_model_stage


def test_clusters_a_sparse_model_keeping_its_zeros(tmp_path, sparse_model_uri, examples_uri):
    out = run_model_stage(Executor(), SparseClusterer, sparse_model_uri, examples_uri, tmp_path,
                          {"number_of_clusters": 4})
    before, after = keras_io.load_model(sparse_model_uri), keras_io.load_model(out.uri)
    for name in ("conv_1", "pw_1", "logits"):
        w0, w1 = before.get_layer(name).get_weights()[0], after.get_layer(name).get_weights()[0]
        assert np.all(w1[w0 == 0] == 0), f"{name}: a zero of the pruned kernel is not zero any more"
        assert np.mean(w1 == 0) == pytest.approx(np.mean(w0 == 0), abs=0.01), name
        assert len(np.unique(w1)) <= 4, f"{name}: {len(np.unique(w1))} values > 4 clusters (zero among them)"
    # A user's model (no kernels.npz): the trace starts with the input kernel, then the clustered one.
    layer, history = kernel_history(out.uri)
    assert layer == "pw_1" and list(history) == ["baseline", "clustered"]
    np.testing.assert_array_equal(history["baseline"], before.get_layer(layer).get_weights()[0])
    np.testing.assert_array_equal(history["clustered"], after.get_layer(layer).get_weights()[0])

    stats = read_json(os.path.join(out.uri, "stats.json"))  # the Pruner's promise is handed on
    assert stats["promises"] == {"target_sparsity": 0.5, "number_of_clusters": 4, "per_channel": False}
    assert prop(out, "technique") == "cluster"
    assert prop(out, "is_clustered") == 1 and prop(out, "is_sparse") == 1
    assert prop(out, "sparsity") == pytest.approx(stats["sparsity"])
    assert prop(out, "accuracy") == pytest.approx(stats["accuracy"]) and 0.0 <= stats["accuracy"] <= 1.0


@pytest.mark.parametrize("bad, message", [
    ({"number_of_clusters": 1}, "cluster.number_of_clusters: 1 is less than the minimum of 2"),
    ({"centroid_init": "nope"},
     "cluster.centroid_init: 'nope' is not one of ['kmeans++', 'linear', 'density', 'random']"),
    ({"per_channel": '"yes"'}, "cluster.per_channel: 'yes' is not of type 'boolean'"),
    ({"feature_shape": "[0]"}, "data.feature_shape.0: 0 is less than the minimum of 1"),
])
def test_bad_exec_property_fails_before_clustering(tmp_path, sparse_model_uri, examples_uri, bad, message):
    with pytest.raises(ConfigError) as e:
        run_model_stage(Executor(), SparseClusterer, sparse_model_uri, examples_uri, tmp_path, **bad)
    assert str(e.value) == message
    assert os.listdir(tmp_path / keys.CLUSTERED_MODEL_KEY) == []
