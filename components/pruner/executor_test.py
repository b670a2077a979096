"""Pruner executor with hand-built artifacts: a user's SavedModel in, a pruned SavedModel, its
stats.json, kernel trace and MLMD properties out; bad parameters fail before any work."""
import os

import numpy as np
import pytest

from collabopt.components import Pruner, keys
from collabopt.components.pruner.executor import Executor
from collabopt.core.model import keras_io
from collabopt.core.tfenv import keras
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, failure_of, kernel_history, read_json, run_model_stage, saved_kernel


def test_prunes_a_users_model(tmp_path, model_uri, examples_uri):
    assert not os.path.exists(os.path.join(model_uri, "kernels.npz"))  # a model from outside collabopt
    out = run_model_stage(Executor(), Pruner, model_uri, examples_uri, tmp_path, {"target_sparsity": 0.6})

    # The density figure's data: the ORIGINAL kernel as "baseline" (TFMOT prunes the loaded model's
    # variables in place: a trace taken after pruning has the pruned kernel there), then the pruned one.
    layer, history = kernel_history(out.uri)
    assert layer == "pw_1" and list(history) == ["baseline", "pruned"]
    np.testing.assert_array_equal(history["baseline"], saved_kernel(model_uri, layer))
    assert np.mean(history["baseline"] == 0) < 0.01
    np.testing.assert_array_equal(history["pruned"], saved_kernel(out.uri, layer))
    assert np.mean(history["pruned"] == 0) == pytest.approx(0.6, abs=0.01)

    pruned = keras_io.load_model(out.uri)  # plain layers: the pruning wrappers are stripped
    assert not any("prune_low_magnitude" in layer.name for layer in pruned.layers)
    kernels = {layer.name: layer.get_weights()[0] for layer in pruned.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))}
    assert set(kernels) == {"conv_1", "dw_1", "pw_1", "logits"}
    for name, w in kernels.items():  # TFMOT prunes no depthwise kernel
        assert np.mean(w == 0) == pytest.approx(0.0 if name == "dw_1" else 0.6, abs=0.01), name
    stats = read_json(os.path.join(out.uri, "stats.json"))
    assert stats["promises"] == {"target_sparsity": 0.6}  # what the converter will check
    assert prop(out, "technique") == "prune"
    # size-weighted over every kernel, the unpruned depthwise one included
    zeros = sum(int(np.sum(w == 0)) for w in kernels.values()) / sum(w.size for w in kernels.values())
    assert prop(out, "sparsity") == pytest.approx(stats["sparsity"]) == pytest.approx(zeros)
    assert prop(out, "is_sparse") == 1 and prop(out, "is_clustered") == 0
    assert prop(out, "num_params") == pruned.count_params()
    assert prop(out, "accuracy") == pytest.approx(stats["accuracy"]) and 0.0 <= stats["accuracy"] <= 1.0
    assert os.listdir(os.path.join(out.uri, "logs"))  # TensorBoard logs of the fine-tuning


@pytest.mark.parametrize("bad, message", [
    ({"target_sparsity": 1.5}, "prune.target_sparsity: 1.5 is greater than or equal to the maximum of 1"),
    ({"m_by_n": "[4, 2]"}, "prune.m_by_n: [4, 2] must be [M, N] with 0 < M < N (M zeros in every N weights)"),
    ({"schedule": "cubic"}, "prune.schedule: 'cubic' is not one of ['constant', 'polynomial']"),
    ({"epochs": 0}, "prune.epochs: 0 is less than the minimum of 1"),
])
def test_bad_exec_property_fails_before_pruning(tmp_path, model_uri, examples_uri, bad, message):
    """A value that reaches the executor anyway (an edited spec, a runtime parameter) is checked again."""
    with pytest.raises(ConfigError) as e:
        run_model_stage(Executor(), Pruner, model_uri, examples_uri, tmp_path, **bad)
    assert str(e.value) == message
    assert os.listdir(tmp_path / keys.PRUNED_MODEL_KEY) == []


def test_a_stage_failure_marks_the_path_failed(tmp_path, examples_uri):
    """A path's own failure (here: strict, and layers TFMOT cannot prune) is an outcome: the execution
    completes with its output marked failed, named by its node (the component without a TFX context)."""
    from collabopt.tests.test_layer_support import preprocessing
    model = os.path.join(str(tmp_path), "model")
    keras_io.save_model(preprocessing(), os.path.join(model, keras_io.SERVING_DIR))
    out = run_model_stage(Executor(), Pruner, model, examples_uri, tmp_path / "out", {"strict": True})
    assert failure_of(out) == (1, "Pruner: prune: 2 layer(s) TFMOT cannot prune (strict: true): scale (Rescaling is "
                                  "not in TFMOT's pruning registry); norm (Normalization is not in TFMOT's pruning "
                                  "registry). Exclude them with prune.exclude_layers, or drop strict to leave them out.")
    assert os.listdir(out.uri) == []


def test_bad_input_still_fails_the_execution(tmp_path, examples_uri):
    """A missing model is every path's problem, not this path's: it raises (the run fails, as before)."""
    with pytest.raises(keras_io.ModelError, match="does not exist"):
        run_model_stage(Executor(), Pruner, str(tmp_path / "nothing"), examples_uri, tmp_path / "out")
