"""data.scale auto (the default): a model that starts with its own Rescaling(1/255) gets the examples as
stored (0..255), not scaled a second time to 0..1/255; any other model gets them times 1/255; an
explicit number is kept. The executors' DataSpec (components/common.data_spec) is what is checked:
every stage reads its examples through it."""
import logging

import numpy as np

from collabopt.components import common, keys
from collabopt.core.data import scale
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import artifact, examples_artifact, fashion_mnist_examples, save_model_dir

LINE = "data.scale auto: the model rescales its own input (layer 'rescaling'), examples fed as stored"


def rescaling_model(own=True):
    L = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255, name="rescaling")(inp) if own else inp
    x = L.Conv2D(4, 3, name="conv")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(L.Flatten()(x)))


def _seen(examples, model_dir, **data):
    from tfx.types import standard_artifacts
    inputs = {keys.EXAMPLES_KEY: [examples_artifact(examples)],
              keys.MODEL_KEY: [artifact(standard_artifacts.Model, model_dir)]}
    spec = common.data_spec(inputs, {**common.data_params(**data), **common.training_params()})
    (x, _), = spec.eval_dataset(64, limit=64).as_numpy_iterator()
    return spec.scale, float(np.max(x))


def test_a_model_with_its_own_rescaling_sees_the_examples_as_stored(tmp_path, caplog):
    examples = fashion_mnist_examples(tmp_path / "examples", 64, 64)
    own = save_model_dir(tmp_path / "own", rescaling_model())
    plain = save_model_dir(tmp_path / "plain", rescaling_model(own=False))
    scale._said.clear()
    with caplog.at_level(logging.INFO, "collabopt"):
        assert _seen(examples, own) == (1.0, 255.0)  # today: (1/255, 1.0), scaled twice inside the model
        assert _seen(examples, own)[0] == 1.0
    assert [r.getMessage() for r in caplog.records].count(LINE) == 1  # once, not once per node
    assert _seen(examples, plain) == (1 / 255, 1.0)
    assert _seen(examples, own, scale=0.5) == (0.5, 127.5)  # an explicit number is kept as given


def test_the_rule_reads_every_model_format_and_sequential_models(tmp_path):
    model = rescaling_model()
    model.save(str(tmp_path / "m.keras"))
    model.save(str(tmp_path / "m.h5"))
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Normalization(mean=0, variance=1, name="norm"),
                            keras.layers.Dense(2)])
    save_model_dir(tmp_path / "seq", seq)
    assert scale.resolve("auto", str(tmp_path / "m.keras")) == scale.resolve("auto", str(tmp_path / "m.h5")) == 1.0
    assert scale.own_rescaling(scale.keras_io.model_config(str(tmp_path / "seq"))) == "norm"
    assert scale.resolve("auto", None) == scale.INT_SCALE  # no model (the baseline trainer's DS-CNN)
