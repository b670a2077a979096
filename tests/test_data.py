import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import gzip

import numpy as np
import pytest
import tensorflow as tf

from collabopt.core.data import examples_io
from collabopt.core.data.examples_io import ExamplesError

FM = examples_io.FASHION_MNIST_DIR
pytestmark = pytest.mark.skipif(not os.path.isdir(FM), reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def subset():
    return examples_io.load_fashion_mnist(train_limit=500, eval_limit=200, seed=0)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, subset):
    uri = str(tmp_path_factory.mktemp("examples"))
    assert examples_io.write_examples(uri, subset) == ["train", "eval"]
    return uri


def test_read_idx_shapes_and_dtypes(tmp_path):
    labels = examples_io.read_idx(f"{FM}/t10k-labels-idx1-ubyte.gz")
    images = examples_io.read_idx(f"{FM}/t10k-images-idx3-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]  # first t10k labels of Fashion-MNIST
    assert sorted(np.unique(labels)) == list(range(10)) and images.max() == 255
    # Uncompressed IDX works as well.
    raw = tmp_path / "labels.idx"
    raw.write_bytes(gzip.decompress(open(f"{FM}/t10k-labels-idx1-ubyte.gz", "rb").read()))
    np.testing.assert_array_equal(examples_io.read_idx(raw), labels)


def test_read_idx_rejects_bad_magic_and_size(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match="not an IDX file"):
        examples_io.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01\x02")
    with pytest.raises(ValueError, match=r"shape \(5,\).*2 data bytes"):
        examples_io.read_idx(short)


def test_load_fashion_mnist_limits_and_determinism(subset):
    (xt, yt), (xe, ye) = subset["train"], subset["eval"]
    assert xt.shape == (500, 28, 28) and xt.dtype == np.uint8 and yt.dtype == np.int64
    assert xe.shape == (200, 28, 28) and ye.shape == (200,)
    assert np.bincount(yt, minlength=10).tolist() == [50] * 10  # class-balanced
    assert np.bincount(ye, minlength=10).tolist() == [20] * 10
    again = examples_io.load_fashion_mnist(train_limit=500, eval_limit=200, seed=0)
    np.testing.assert_array_equal(again["train"][0], xt)
    np.testing.assert_array_equal(again["eval"][1], ye)
    other = examples_io.load_fashion_mnist(train_limit=500, eval_limit=200, seed=1)
    assert not np.array_equal(other["train"][0], xt)
    # Subset rows are real rows of the full set with their own labels.
    full = examples_io.load_fashion_mnist()
    assert full["train"][0].shape == (60000, 28, 28) and full["eval"][1].shape == (10000,)
    match = np.flatnonzero((full["eval"][0] == xe[0]).all(axis=(1, 2)))
    assert full["eval"][1][match[0]] == ye[0]


def test_load_fashion_mnist_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        examples_io.load_fashion_mnist(data_dir=str(tmp_path))


def test_round_trip(artifact, subset):
    assert os.listdir(f"{artifact}/Split-train") == ["data_tfrecord-00000-of-00001.gz"]
    for split in ("train", "eval"):
        images, labels = subset[split]
        x, y = examples_io.read_examples(artifact, split)
        assert x.dtype == np.float32 and x.shape == (len(images), 28, 28, 1)
        assert y.dtype == np.int64 and set(y.tolist()) <= set(range(10))
        np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)
    x, y = examples_io.read_examples(artifact, "train", feature_shape=(784,), limit=7, scale=1.0)
    np.testing.assert_array_equal(x, subset["train"][0][:7].reshape(7, 784))
    np.testing.assert_array_equal(y, subset["train"][1][:7])


def test_multiple_shards(tmp_path, subset):
    images, labels = subset["eval"]
    examples_io.write_examples(str(tmp_path), {"test": (images, labels)}, num_shards=3)
    files = examples_io.split_files(str(tmp_path), "test")
    assert [os.path.basename(f) for f in files] == [
        f"data_tfrecord-0000{i}-of-00003.gz" for i in range(3)]
    x, y = examples_io.read_examples(str(tmp_path), "test", scale=1.0)
    np.testing.assert_array_equal(x[..., 0], images)  # order preserved across shards
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(FileExistsError):
        examples_io.write_examples(str(tmp_path), {"test": (images, labels)})


def test_error_messages(artifact):
    with pytest.raises(ExamplesError) as e:
        examples_io.read_examples(artifact, "train", feature_key="pixels")
    assert str(e.value) == ("Examples split 'train' has no feature 'pixels'; "
                            "available features: image, label")
    with pytest.raises(ExamplesError) as e:
        examples_io.read_examples(artifact, "train", label_key="target")
    assert str(e.value) == ("Examples split 'train' has no feature 'target'; "
                            "available features: image, label")
    with pytest.raises(ExamplesError, match=r"split 'test' does not exist.*available splits: eval, train"):
        examples_io.read_examples(artifact, "test")
    with pytest.raises(ExamplesError, match=r"784 values per example.*\(32, 32, 1\) needs 1024"):
        examples_io.read_examples(artifact, "eval", feature_shape=(32, 32, 1))
    assert isinstance(ExamplesError("x"), ValueError)


def test_empty_split_folder(tmp_path):
    os.makedirs(tmp_path / "Split-train")
    with pytest.raises(ExamplesError, match="'train' is empty.*available splits: train"):
        examples_io.split_files(str(tmp_path), "train")


def test_bytes_and_float_features_written_by_hand(tmp_path, subset):
    images, labels = subset["train"][0][:20], subset["train"][1][:20]
    for name, make in {
        "bytes": lambda im: tf.train.Feature(bytes_list=tf.train.BytesList(value=[im.tobytes()])),
        "float": lambda im: tf.train.Feature(float_list=tf.train.FloatList(value=im.ravel() / 255.0)),
    }.items():
        split_dir = tmp_path / f"Split-{name}"
        os.makedirs(split_dir)
        # Any file name is read, like ExampleGen's own output.
        with tf.io.TFRecordWriter(str(split_dir / "part-0.gz"), options="GZIP") as w:
            for im, lab in zip(images, labels):
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    "pixels": make(im),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[lab]))})).SerializeToString())
        x, y = examples_io.read_examples(str(tmp_path), name, feature_key="pixels", label_key="y")
        assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32
        np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)  # float_list is not rescaled
        np.testing.assert_array_equal(y, labels)


def test_inconsistent_records(tmp_path):
    split_dir = tmp_path / "Split-train"
    os.makedirs(split_dir)
    with tf.io.TFRecordWriter(str(split_dir / "data.gz"), options="GZIP") as w:
        for n in (784, 10):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * n)),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))})).SerializeToString())
    with pytest.raises(ExamplesError, match="do not all match the first one"):
        examples_io.read_examples(str(tmp_path), "train")
