"""A TFX Trainer module file as TFX's own examples write it runs unchanged (issue 22, item 4): its
`input_fn(file_pattern, data_accessor, tf_transform_output, batch_size)` gets a data accessor whose
tf_dataset_factory is TFX's reader with tfx_bsl's TensorFlowDatasetOptions honoured, and an identity
tf_transform_output; its endless dataset (`.repeat()`) is read one epoch at a time.

The module is TFX's own file, tfx/examples/mnist/mnist_utils_native_keras_base.py, unchanged: it
reads the transformed MNIST features `image_floats_xf` (784 floats in [-0.5, 0.5]) and the label
`image_class_xf`, as a Transform's transformed_examples hold them; here Fashion-MNIST written so."""
import contextlib
import importlib.util
import io
import json
import os

import numpy as np
import pytest

from collabopt import cli
from collabopt.core import artifact_files
from collabopt.core.data import examples_io as data, tfx_input
from collabopt.core.model import keras_io
from collabopt.tests.bad_input_fixtures import write

FEATURE, LABEL = "image_floats_xf", "image_class_xf"


def tfx_example_module():
    import tfx
    return os.path.join(os.path.dirname(tfx.__file__), "examples", "mnist", "mnist_utils_native_keras_base.py")


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Examples holding Fashion-MNIST as the TFX example's Transform writes MNIST (300 train, 100 eval)."""
    uri = str(tmp_path_factory.mktemp("tfx") / "examples")
    splits = data.load_fashion_mnist(train_limit=300, eval_limit=100)
    data.write_examples(uri, {s: (x.reshape(len(x), -1).astype(np.float32) / 255 - 0.5, y) for s, (x, y) in splits.items()},
                        image_key=FEATURE, label_key=LABEL)
    return uri


def _labels(ds):
    return np.concatenate([y for _, y in ds.as_numpy_iterator()]).reshape(-1)


def test_the_data_accessor_honours_tfx_bsl_options(transformed):
    from tfx_bsl.public import tfxio
    files = data.split_files(transformed, "train")
    schema = tfx_input.schema_of(files)
    accessor = tfx_input.DataAccessor(schema)
    in_order = accessor.tf_dataset_factory(files, tfxio.TensorFlowDatasetOptions(
        batch_size=7, label_key=LABEL, num_epochs=1, shuffle=False), schema)
    features, labels = next(iter(in_order))
    assert set(features) == {FEATURE} and features[FEATURE].shape == (7, 784) and labels.shape == (7, 1)
    _, file_labels = data.read_examples(transformed, "train", FEATURE, LABEL, feature_shape=(784,))
    assert _labels(in_order).tolist() == file_labels.tolist()  # one epoch, in file order
    twice = tfxio.TensorFlowDatasetOptions(batch_size=50, label_key=LABEL, num_epochs=2, shuffle=False)
    assert len(_labels(accessor.tf_dataset_factory(files, twice, schema))) == 600
    shuffled = _labels(accessor.tf_dataset_factory(files, tfxio.TensorFlowDatasetOptions(
        batch_size=50, label_key=LABEL, num_epochs=1, shuffle=True, shuffle_seed=1), schema))
    assert shuffled.tolist() != file_labels.tolist() and sorted(shuffled) == sorted(file_labels)
    assert tfx_input.TransformOutput(schema).transformed_feature_spec()[LABEL].shape == [1]


@pytest.mark.slow  # a real pipeline run
def test_a_tfx_trainer_module_runs_unchanged(transformed, tmp_path):
    """Trained as the example's run_fn trains it (its input_fn, endless, with steps per epoch), then
    collabopt run of the prune_ptq path with the same file as training.module_file."""
    spec = importlib.util.spec_from_file_location("mnist_utils_native_keras_base", tfx_example_module())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = data.split_files(transformed, "train")
    schema = tfx_input.schema_of(files)
    model = module.build_keras_model()
    model.fit(module.input_fn(files, tfx_input.DataAccessor(), tfx_input.TransformOutput(schema), 30),
              steps_per_epoch=30, epochs=2, verbose=0)
    keras_io.save_model(model, str(tmp_path / "model" / keras_io.SERVING_DIR))
    config = write(tmp_path / "tfx.yaml", {
        "name": "tfx-module", "paths": ["prune_ptq"], "examples": {"uri": transformed},
        "baseline": {"model_uri": str(tmp_path / "model")}, "training": {"module_file": tfx_example_module()},
        "data": {"label_key": LABEL, "train_limit": 300, "eval_limit": 100}, "prune": {"epochs": 1},
        "npu": {"targets": ["ethos-u55-128"]}})
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["run", config, "--root", str(tmp_path / "run")]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["report", "--root", str(tmp_path / "run"), "--format", "json"])
    leaves = {leaf["path"]: leaf for leaf in json.loads(out.getvalue())}
    assert sorted(leaves) == ["prune_ptq", "ptq"] and not any(leaf["failed"] for leaf in leaves.values())
    for leaf in leaves.values():  # every eval record once (the dataset repeats), well above chance (0.1)
        assert artifact_files.read_leaf(leaf["uri"])["eval_examples"] == 100 and leaf["int8_accuracy"] > 0.4, leaf
