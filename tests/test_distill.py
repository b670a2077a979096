"""thin.distill: the thinned model's fine-tune learns the input model's outputs (KL of the class
distributions for a classifier, MSE for an autoencoder) and the stage still saves the plain thinned
model; the config rejects a weight outside [0, 1] naming thin.distill."""
import os

import numpy as np
import pytest

from collabopt.core import artifact_files, stages
from collabopt.core.model import baseline, distill, keras_io, train
from collabopt.core.tfenv import keras, tf
from collabopt.pipelines import config as tree_config
from collabopt import schemas
from collabopt.tests.helpers import fashion_mnist_examples

L = keras.layers


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return stages.DataSpec(fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=256,
                                                  eval_limit=128))


def _classifier(width, seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = L.Conv2D(width, 3, strides=2, activation="relu")(inp)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x))


def _kl_to(teacher, student, batches):
    kl = [keras.losses.kl_divergence(teacher(x, training=False), student(x, training=False)).numpy().mean()
          for x, _ in batches]
    return float(np.mean(kl))


def _fine_tuned(student, start, teacher, data, alpha):
    student.set_weights(start)
    distill.fit(student, teacher, data, alpha=alpha, epochs=1, learning_rate=1e-2, stage="thin")
    return student


def test_distilled_classifier_moves_toward_the_teacher(spec):
    teacher = _classifier(16, seed=1)  # its own outputs, unlike the labels: what only distillation learns
    student = _classifier(8, seed=2)
    start, data, held_out = student.get_weights(), spec.train_dataset(64), list(spec.eval_dataset())
    assert distill.distance_kind(student, data) == distill.KL
    before = _kl_to(teacher, student, held_out)
    labels_only = _kl_to(teacher, _fine_tuned(student, start, teacher, data, 0.0), held_out)
    distilled = _kl_to(teacher, _fine_tuned(student, start, teacher, data, 1.0), held_out)
    assert distilled < 0.5 * min(before, labels_only)
    assert type(student) is type(teacher) and len(student.layers) == 4  # trained in place, no wrapper


def test_autoencoder_distills_by_mse():
    x = np.random.default_rng(0).random((256, 16), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, x)).batch(64)

    def autoencoder(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((16,))
        return keras.Model(inp, L.Dense(16)(L.Dense(4, activation="relu")(inp)))

    teacher, student = autoencoder(1), autoencoder(2)
    assert distill.distance_kind(student, data) == distill.MSE  # the target is the input: not a classifier
    start = student.get_weights()
    mse = lambda m: float(np.mean((teacher.predict(x, verbose=0) - m.predict(x, verbose=0)) ** 2))  # noqa: E731
    labels_only = mse(_fine_tuned(student, start, teacher, data, 0.0))
    distilled = mse(_fine_tuned(student, start, teacher, data, 1.0))
    assert distilled < 0.5 * labels_only


def test_logits_head_uses_kl_and_a_module_loss_mse(spec):
    model, data = baseline.ds_cnn(width=8, blocks=1), spec.train_dataset(64)  # ends in logits
    assert distill.distance_kind(model, data) == distill.KL
    custom = train.TrainingSpec(loss_fn=lambda m: keras.losses.MeanSquaredError())
    assert distill.distance_kind(model, data, custom) == distill.MSE


@pytest.mark.slow  # ~40 s: Vela compiles while the widths are chosen
def test_thin_stage_with_distill_saves_the_plain_thinned_model(spec, tmp_path):
    base = str(tmp_path / "base")
    keras_io.save_model(baseline.ds_cnn(width=32, blocks=1), os.path.join(base, artifact_files.MODEL_DIR))
    stats = stages.thin(base, spec, str(tmp_path / "thin"), keep_ratio=0.5, distill=0.5,
                        fit=stages.FitSpec(epochs=1, batch_size=64))
    saved, original = keras_io.load_model(str(tmp_path / "thin")), keras_io.load_model(base)
    assert stats["distill"] == 0.5 and stats["channel_widths"]
    assert [layer.name for layer in saved.layers] == [layer.name for layer in original.layers]
    assert saved.count_params() == stats["num_params"] < original.count_params()


@pytest.mark.parametrize("value, message", [
    (1.5, "thin.distill: 1.5 is greater than the maximum of 1"),
    (-0.1, "thin.distill: -0.1 is less than the minimum of 0"),
    ("0.5", "thin.distill: '0.5' is not of type 'number'"),
])
def test_config_rejects_a_bad_distill_weight(value, message):
    with pytest.raises(schemas.ConfigError) as e:
        tree_config.merge({"paths": "all", "thin": {"distill": value}})
    assert message in str(e.value)
