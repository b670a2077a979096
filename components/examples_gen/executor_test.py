"""FashionMnistExampleGen executor: IDX files (hand-written ones, then Debian's Fashion-MNIST) in, an
ExampleGen-style Examples artifact out, read back image for image; bad parameters fail first."""
import gzip
import json
import os

import numpy as np
import pytest

from collabopt.components import FashionMnistExampleGen, keys
from collabopt.components.examples_gen.executor import Executor
from collabopt.core.data import examples_io
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, run_executor


def _write_idx(path, array):
    """An IDX file (uint8), gzipped, as Fashion-MNIST ships: magic 0x0000 0x08 ndim, big-endian dims."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _idx_dir(root, counts):
    rng = np.random.default_rng(0)
    splits = {}
    for prefix, n in counts.items():
        images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        _write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), images)
        _write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        splits[prefix] = images, labels
    return splits


def _generate(tmp_path, **params):
    return run_executor(Executor(), FashionMnistExampleGen(**params), {}, tmp_path)[keys.EXAMPLES_KEY]


def test_hand_written_idx_files_read_back_exactly(tmp_path):
    written = _idx_dir(tmp_path, {"train": 12, "t10k": 5})
    examples = _generate(tmp_path, data_dir=str(tmp_path))
    assert json.loads(examples.split_names) == ["train", "eval"]
    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train"]
    assert (prop(examples, "train_count"), prop(examples, "eval_count")) == (12, 5)
    assert json.loads(prop(examples, "features")) == {"image": [28, 28, 1], "label": []}
    for split, prefix in (("train", "train"), ("eval", "t10k")):  # t10k is the eval split
        x, y = examples_io.read_examples(examples.uri, split)
        images, labels = written[prefix]
        np.testing.assert_array_equal(np.rint(x * 255), images.reshape(-1, 28, 28, 1))  # read back scaled to [0, 1]
        np.testing.assert_array_equal(y, labels)


def test_class_balanced_subsets_of_fashion_mnist(tmp_path):
    examples = _generate(tmp_path, train_limit=50, eval_limit=20, seed=1)
    assert (prop(examples, "train_count"), prop(examples, "eval_count")) == (50, 20)
    for split, per_class in (("train", 5), ("eval", 2)):
        _, y = examples_io.read_examples(examples.uri, split)
        assert np.bincount(y, minlength=10).tolist() == [per_class] * 10


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        _generate(tmp_path, data_dir=str(tmp_path / "nowhere"))
    first = tmp_path / "nowhere" / "train-images-idx3-ubyte.gz"
    assert str(e.value).startswith(f"Fashion-MNIST file(s) not found: {first}, ")
    assert "apt-get install dataset-fashion-mnist" in str(e.value)


def test_bad_exec_property_fails_before_reading(tmp_path):
    gen = FashionMnistExampleGen(train_limit=10)
    with pytest.raises(ConfigError) as e:
        run_executor(Executor(), gen, {}, tmp_path, train_limit=-1)
    assert str(e.value) == "data.train_limit: -1 is less than the minimum of 0"
    assert os.listdir(tmp_path / keys.EXAMPLES_KEY) == []
