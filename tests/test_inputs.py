"""How data gets into a model (core/inputs.py): streamed tf.data batches for fine-tuning, evaluation
and calibration; training.target; data.scale; a TFX-style module_file checked at config load."""
import math
import os

import numpy as np
import pytest

from collabopt import schemas
from collabopt.core.data import examples_io, inputs, user_module
from collabopt.core.evaluation import metrics
from collabopt.core.techniques import optimize
from collabopt.core import stages
from collabopt.core.model import train
from collabopt.core.tfenv import keras, tf
from collabopt.pipelines import config as tree_config
from collabopt.tests.helpers import dense_model, fashion_mnist_examples


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=300, eval_limit=100)


def test_fine_tuning_streams_batches_with_a_known_number_of_steps(examples):
    """The train split is a tf.data pipeline (never one array): batches of batch_size, a shuffle
    buffer bounded whatever the split's size, and a cardinality counted from the records, which
    pruning's schedule uses for its steps."""
    spec = inputs.DataSpec(examples, train_limit=250)
    ds = spec.train_dataset(64)
    assert isinstance(ds, tf.data.Dataset) and int(ds.cardinality()) == math.ceil(250 / 64)
    assert [len(y) for _, y in ds] == [64, 64, 64, 58]
    assert inputs.SHUFFLE_BUFFER < 10_000  # records held for shuffling: bounded, not the split
    epoch1, epoch2 = (np.concatenate([y for _, y in ds]) for _ in range(2))
    assert sorted(epoch1) == sorted(epoch2) and not np.array_equal(epoch1, epoch2)  # reshuffled per epoch
    pruned = optimize.prune(dense_model(), ds, target_sparsity=0.5, schedule="constant", frequency=1, epochs=1)
    kernel = pruned.layers[-1].kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)
    assert spec.count("train") == 300 and spec.count("train", spec.train_cap()) == 250


def test_eval_batches_and_representative_read_what_read_examples_reads(examples):
    x, y = examples_io.read_examples(examples, "eval", limit=70)
    spec = inputs.DataSpec(examples, eval_limit=70)
    got = list(spec.eval_dataset(32).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([f for f, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([t for _, t in got]), y)
    files = examples_io.split_files(examples, "eval")
    per_file = list(spec.batches("eval", files, batch_size=40))  # no limit: the caller chose the files
    assert [len(t) for _, t in per_file] == [40, 40, 20]
    assert list(spec.batches("eval", [])) == []
    rep = list(inputs.DataSpec(examples).representative(3)())
    assert len(rep) == 3 and all(len(r) == 1 and r[0].shape == (1, 28, 28, 1) for r in rep)
    xt, _ = examples_io.read_examples(examples, "train", limit=3)
    np.testing.assert_array_equal(np.concatenate([r[0] for r in rep]), xt)


def test_data_scale_multiplies_integer_features(examples):
    (raw, _), = inputs.DataSpec(examples, scale=1.0).eval_dataset(100).as_numpy_iterator()
    (default, _), = inputs.DataSpec(examples).eval_dataset(100).as_numpy_iterator()
    assert raw.max() == 255 and default.max() == 1.0
    np.testing.assert_allclose(default, raw / 255, rtol=1e-6)


def test_target_features_fine_tunes_an_autoencoder_with_mse(examples):
    """Fine-tuning fits (features, features); evaluation reads (features, labels) and compares the
    output with the features (core.metrics), so an AE's AUC has its labels."""
    spec = inputs.DataSpec(examples, feature_shape=(784,), target=inputs.FEATURES)
    features, targets = next(iter(spec.train_dataset(32)))
    np.testing.assert_array_equal(features, targets)
    (xe, ye), = spec.eval_dataset(100).as_numpy_iterator()
    np.testing.assert_array_equal(ye, examples_io.read_examples(examples, "eval", feature_shape=(784,))[1])
    i = keras.Input((784,), name="x")
    auto = keras.Model(i, keras.layers.Dense(784, name="decode")(keras.layers.Dense(32, name="code")(i)))
    mse = train.TrainingSpec(eval_metric="mse")
    before = metrics.of_keras(mse, auto, spec.eval_dataset(), spec.target)
    train.fit(auto, spec.train_dataset(32), epochs=3, learning_rate=1e-3)
    assert isinstance(auto.loss, keras.losses.MeanSquaredError)
    after = metrics.of_keras(mse, auto, spec.eval_dataset(), spec.target)
    assert after < before / 2
    assert after == pytest.approx(float(np.mean((auto.predict(xe, verbose=0) - xe) ** 2)), rel=1e-5)


def test_an_autoencoder_through_the_prune_stage(examples, tmp_path):
    """checks, fine-tuning and stats of a stage with target=features: the output is no class logits."""
    from collabopt.core.model import keras_io
    i = keras.Input((784,), name="x")
    auto = keras.Model(i, keras.layers.Dense(784, name="decode")(keras.layers.Dense(64, name="code")(i)))
    keras_io.save_model(auto, os.path.join(str(tmp_path / "ae"), keras_io.SERVING_DIR))
    spec = stages.DataSpec(examples, feature_shape=(784,), target=inputs.FEATURES)
    stats = stages.prune(str(tmp_path / "ae"), spec, str(tmp_path / "p"), target_sparsity=0.5, fit=stages.FitSpec(epochs=1),
                         training=train.TrainingSpec(eval_metric="mse"))
    assert "accuracy" not in stats and 0 < stats["metric"] < 1 and stats["sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("source,why", [
    (None, "'{path}' does not exist"),
    ("import no_such_package_xyz\n", "'{path}' does not import: ModuleNotFoundError: No module named 'no_such_package_xyz'"),
    ("def input_function(file_pattern, batch_size, split, training):\n    pass\n",
     "'{path}' defines no input_fn(file_pattern, batch_size, split, training)"),
    ("input_fn = 3\n", "'{path}': input_fn is a int, not a function"),
])
def test_a_bad_module_file_is_a_config_error_naming_the_field(source, why, tmp_path):
    path = tmp_path / "module.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(schemas.ConfigError) as e:
        tree_config.merge({"paths": "all", "training": {"module_file": str(path)}})
    assert str(e.value).splitlines()[1].strip() == "training.module_file: " + why.format(path=path)


def test_module_file_hooks_load_once(examples, tmp_path):
    path = tmp_path / "module.py"
    path.write_text("def input_fn(file_pattern, batch_size, split, training):\n    return None\n"
                    "def loss_fn(model):\n    return 'mse'\n")
    with pytest.raises(schemas.ConfigError, match="training.eval_metric: 'accuracy' compares classes, but training.target is 'features'"):
        tree_config.merge({"paths": "all", "training": {"target": "features"}})
    cfg = tree_config.merge({"paths": "all", "training": {"module_file": str(path), "target": "features", "eval_metric": "mse"}})
    assert (cfg["training"]["module_file"], cfg["training"]["target"], cfg["training"]["loss"]) == (str(path), "features", "auto")
    assert user_module.load(str(path)) is user_module.load(str(path))
    assert user_module.hook(str(path), user_module.LOSS_FN)(None) == "mse"
    assert user_module.hook(str(path), user_module.METRICS_FN) is None and user_module.hook(None, user_module.LOSS_FN) is None
    spec = inputs.DataSpec(examples, module_file=str(path))
    with pytest.raises(user_module.UserModuleError, match=r"input_fn returned a NoneType, not a tf.data.Dataset$"):
        spec.eval_dataset()


def test_training_and_scale_reach_the_executors_data_spec(tmp_path):
    """Encoded as component parameters and decoded again in the executor (components/common.py)."""
    from collabopt.components import common, keys
    from collabopt.tests.helpers import examples_artifact
    module = tmp_path / "module.py"
    module.write_text("def input_fn(file_pattern, batch_size, split, training):\n    pass\n"
                      "def loss_fn(model):\n    return 'mae'\n")
    props = {**common.data_params(scale=0.5), **common.training_params({"target": "features", "module_file": str(module),
                                                                                  "eval_metric": "mae"})}
    spec = common.data_spec({keys.EXAMPLES_KEY: [examples_artifact(tmp_path)]}, props)
    assert (spec.target, spec.module_file, spec.scale) == ("features", str(module), 0.5)
    training = common.training_spec(props)  # the module_file's hooks reach fine-tuning
    assert training.metrics_fn is None
    i = keras.Input((4,), name="x")
    model = keras.Model(i, keras.layers.Dense(4)(i))
    x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
    train.fit(model, x, x, epochs=1, batch_size=8, training=training)
    assert model.loss == "mae"  # the hook's loss, not the 'auto' MSE a reconstruction gets
    defaults = {**common.data_params(), **common.training_params()}
    assert common.data_spec({keys.EXAMPLES_KEY: [examples_artifact(tmp_path)]}, defaults).module_file is None
    assert common.training_spec(defaults).loss_fn is None
    with pytest.raises(schemas.ConfigError, match=r"^training.target: 'labels' is not one of \['label', 'features'\]$"):
        common.training_params({"target": "labels"})
    with pytest.raises(schemas.ConfigError, match=r"^data.scale: 0 is less than or equal to the minimum of 0$"):
        common.data_params(scale=0)
