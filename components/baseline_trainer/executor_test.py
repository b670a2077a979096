"""BaselineTrainer executor with hand-built Examples: a trained DS-CNN SavedModel (as a TFX Trainer lays
it out), its stats.json, the first entry of the kernel trace and MLMD properties; bad parameters
fail before any training."""
import os

import numpy as np
import pytest
from tfx.types import standard_artifacts

from collabopt.components import BaselineTrainer, keys
from collabopt.components.baseline_trainer.executor import Executor
from collabopt.core.data import examples_io
from collabopt.core.model import keras_io, train
from collabopt.core.tfenv import keras
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import (prop, TINY_DATA, channel, examples_artifact, kernel_history, read_json,
                                     run_executor)


def _train(tmp_path, examples_uri, **overrides):
    trainer = BaselineTrainer(examples=channel(standard_artifacts.Examples), width=16, blocks=1, epochs=5,
                              batch_size=16, learning_rate=0.01, **TINY_DATA)
    return run_executor(Executor(), trainer, {keys.EXAMPLES_KEY: examples_artifact(examples_uri)}, tmp_path,
                        **overrides)[keys.MODEL_KEY]


def test_trains_the_baseline(tmp_path, examples_uri):
    out = _train(tmp_path, examples_uri)
    assert os.path.isfile(os.path.join(out.uri, keras_io.SERVING_DIR, "saved_model.pb"))  # a Trainer's layout
    model = keras_io.load_model(out.uri)
    assert model.get_layer("conv_1").filters == 16 and model.get_layer("pw_1").filters == 16  # width
    assert [l.name for l in model.layers if isinstance(l, keras.layers.DepthwiseConv2D)] == ["dw_1"]  # blocks
    assert model.output_shape == (None, 10)

    x, y = examples_io.read_examples(examples_uri, "eval", limit=TINY_DATA["eval_limit"])
    accuracy = prop(out, "accuracy")
    assert accuracy == pytest.approx(train.accuracy(model, x, y))
    assert accuracy > 0.2  # learned something from 200 images (chance 0.1; it ends near 0.3-0.5, not always above 0.3)
    assert prop(out, "num_params") == model.count_params()
    assert prop(out, "is_sparse") == 0 and prop(out, "is_clustered") == 0
    assert read_json(os.path.join(out.uri, "stats.json"))["accuracy"] == accuracy
    # The trace a path starts from: the baseline's sampled kernel.
    layer, history = kernel_history(out.uri)
    assert layer == "pw_1" and list(history) == ["baseline"]
    np.testing.assert_array_equal(history["baseline"], model.get_layer(layer).get_weights()[0])
    assert os.listdir(os.path.join(out.uri, "logs"))  # TensorBoard logs


def test_bad_exec_property_fails_before_training(tmp_path, examples_uri):
    with pytest.raises(ConfigError) as e:
        _train(tmp_path, examples_uri, width=0)
    assert str(e.value) == "baseline.width: 0 is less than the minimum of 1"
    assert os.listdir(tmp_path / keys.MODEL_KEY) == []
