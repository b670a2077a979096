"""Fashion-MNIST loading and TFX `Examples` artifact I/O (numpy + TensorFlow only, no tfx import).

An `Examples` artifact as written by TFX ExampleGen is a folder with one `Split-<name>` subfolder
per split, each holding GZIP-compressed TFRecord files of serialized `tf.train.Example`.
File access goes through `tf.io.gfile`, so artifact URIs may also be remote (e.g. gs://).
"""
import gzip
import os
import re

import numpy as np
from google.protobuf import message

from collabopt.schemas import defaults
from collabopt.core.tfenv import tf

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_SHAPE = tuple(defaults.FASHION_MNIST_SHAPE)  # the default feature shape (what our ExampleGen writes)
INT_SCALE = defaults.INT_SCALE  # default multiplier of integer-valued features (uint8 pixels -> [0, 1]); data.scale
_SPLIT_PREFIX = "Split-"
# IDX type codes -> numpy dtypes (multi-byte values are big-endian).
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ExamplesError(ValueError):
    """An Examples artifact is missing, empty or does not match what the caller asked for."""


# ---------------------------------------------------------------- Fashion-MNIST (IDX files)

def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into an array with the shape from its header."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # detect gzip by magic, not by file name
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {data[:4].hex() or 'empty'}, "
                         "expected 0000 + type code + number of dimensions)")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} ({dtype}) but the file holds "
                         f"{len(body)} data bytes")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _subset(labels, limit, rng):
    """Indices of a seeded random subset of size `limit` with classes as balanced as possible."""
    perm = rng.permutation(len(labels))
    lab = labels[perm]
    # Rank of each example within its class (in permuted order); taking the lowest ranks first
    # gives round-robin over classes, so every class gets ~limit/num_classes examples.
    by_class = np.argsort(lab, kind="stable")
    starts = np.searchsorted(lab[by_class], lab[by_class])
    rank = np.empty(len(lab), np.int64)
    rank[by_class] = np.arange(len(lab)) - starts
    return perm[np.argsort(rank, kind="stable")[:limit]]


def load_fashion_mnist(data_dir=FASHION_MNIST_DIR, train_limit=None, eval_limit=None, seed=0):
    """Load Fashion-MNIST as {"train": (images, labels), "eval": (images, labels)}.

    Images are uint8 [N, 28, 28], labels int64 [N]; the t10k set is the eval split. A limit takes
    a class-balanced random subset, deterministic for a given seed.
    """
    out = {}
    for split, prefix, limit in (("train", "train", train_limit), ("eval", "t10k", eval_limit)):
        paths = [os.path.join(data_dir, f"{prefix}-{kind}-ubyte.gz")
                 for kind in ("images-idx3", "labels-idx1")]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST file(s) not found: {', '.join(missing)}. Install them with "
                "`apt-get install dataset-fashion-mnist` (or pass data_dir=...).")
        images, labels = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"{data_dir}: {len(images)} {prefix} images but {len(labels)} labels")
        if limit is not None and limit < len(labels):
            # Separate streams per split so changing one limit does not change the other subset.
            idx = _subset(labels, limit, np.random.default_rng([seed, len(out)]))
            images, labels = images[idx], labels[idx]
        out[split] = (images, labels)
    return out


# ---------------------------------------------------------------- Examples artifact I/O

def _feature(values) -> tf.train.Feature:
    values = np.asarray(values).ravel()
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.astype(np.float32)))


def write_examples(uri, splits, image_key="image", label_key="label", num_shards=1) -> list:
    """Write {split: (images, labels)} as an ExampleGen-style Examples artifact under `uri`.

    Integer pixels are stored flattened as an int64_list (float images as a float_list), the
    label as an int64_list of one value. Shards are contiguous chunks, so reading the sorted
    files back preserves the order. Returns the split names.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    for name, (images, labels) in splits.items():
        if len(images) != len(labels):
            raise ValueError(f"split {name!r}: {len(images)} images but {len(labels)} labels")
        split_dir = os.path.join(uri, _SPLIT_PREFIX + name)
        if tf.io.gfile.exists(split_dir) and tf.io.gfile.listdir(split_dir):
            # Stale shards from an earlier write would silently be read back as well.
            raise FileExistsError(f"{split_dir} already contains files")
        tf.io.gfile.makedirs(split_dir)
        labels = np.asarray(labels)
        for i, chunk in enumerate(np.array_split(np.arange(len(labels)), num_shards)):
            path = os.path.join(split_dir, f"data_tfrecord-{i:05d}-of-{num_shards:05d}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for j in chunk:
                    example = tf.train.Example(features=tf.train.Features(feature={
                        image_key: _feature(images[j]),
                        label_key: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[int(labels[j])]))}))
                    writer.write(example.SerializeToString())
    return list(splits)


def _available_splits(uri):
    if not tf.io.gfile.isdir(uri):
        return []
    return sorted(d.rstrip("/")[len(_SPLIT_PREFIX):] for d in tf.io.gfile.listdir(uri)
                  if d.startswith(_SPLIT_PREFIX))


def split_files(uri, split) -> list:
    """Sorted data files of `Split-<split>` (any file name: ExampleGen output is read as is)."""
    split_dir = os.path.join(uri, _SPLIT_PREFIX + split)
    files = []
    if tf.io.gfile.isdir(split_dir):
        files = sorted(os.path.join(split_dir, f) for f in tf.io.gfile.listdir(split_dir)
                       if not tf.io.gfile.isdir(os.path.join(split_dir, f)))
    if not files:
        state = "is empty" if tf.io.gfile.isdir(split_dir) else "does not exist"
        available = ", ".join(_available_splits(uri)) or "none"
        raise ExamplesError(f"Examples split {split!r} {state} ({split_dir}); "
                            f"available splits: {available}")
    return files


def _kind(example, key, split):
    """Which value list ('int64_list', 'float_list', 'bytes_list') `key` uses, and its length."""
    features = example.features.feature
    if key not in features:
        raise ExamplesError(f"Examples split {split!r} has no feature {key!r}; "
                            f"available features: {', '.join(sorted(features))}")
    kind = features[key].WhichOneof("kind")
    if kind is None:
        raise ExamplesError(f"Examples split {split!r}: feature {key!r} holds no values")
    values = getattr(features[key], kind).value
    return kind, (len(np.frombuffer(values[0], np.uint8)) if kind == "bytes_list" and values
                  else len(values))


def example_parser(first_record, split, feature_key="image", label_key="label", feature_shape=FASHION_MNIST_SHAPE,
                   scale=INT_SCALE):
    """A batch parser for the records of a split, typed from its first serialized tf.Example.

    Returns (parse, kind, size): parse(serialized [N]) -> (x float32 [N, size], y int64 [N]).
    The feature may be an int64_list, float_list or bytes_list (raw uint8 bytes); `scale`
    multiplies integer-valued (int64/bytes) features only.
    """
    example = tf.train.Example.FromString(first_record)
    kind, size = _kind(example, feature_key, split)
    label_kind, label_size = _kind(example, label_key, split)
    feature_shape = tuple(feature_shape) if feature_shape is not None else (size,)
    if size != int(np.prod(feature_shape)):
        hint = " (bytes_list is read as raw uint8 pixels)" if kind == "bytes_list" else ""
        raise ExamplesError(
            f"Examples split {split!r}: feature {feature_key!r} has {size} values per example{hint}"
            f" but feature_shape {feature_shape} needs {int(np.prod(feature_shape))}")
    if label_kind == "bytes_list" or label_size != 1:
        raise ExamplesError(f"Examples split {split!r}: label {label_key!r} must be one int64 or "
                            f"float value per example, found {label_size} in a {label_kind}")

    spec = {feature_key: tf.io.FixedLenFeature([] if kind == "bytes_list" else [size],
                                               {"int64_list": tf.int64, "float_list": tf.float32,
                                                "bytes_list": tf.string}[kind]),
            label_key: tf.io.FixedLenFeature([], tf.int64 if label_kind == "int64_list"
                                             else tf.float32)}

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        x = parsed[feature_key]
        if kind == "bytes_list":
            x = tf.io.decode_raw(x, tf.uint8)  # fails on ragged sizes -> reported by the caller
        x = tf.cast(x, tf.float32)
        if kind != "float_list":
            x = x * scale
        return x, tf.cast(parsed[label_key], tf.int64)

    return parse, kind, size


def _tf_words(error):
    """A TF error's own words, without its function-node prefix and op suffix."""
    words = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:\w+\].*$", "", words, flags=re.S).strip()


def count_records(files, limit=0, split=None):
    """Records in `files` (at most `limit`; 0: all), counted without parsing them; a file that is not a
    complete GZIP TFRecord file is an ExamplesError naming it (and `split`)."""
    n = 0
    for path in files:
        records = tf.data.TFRecordDataset(path, compression_type="GZIP")
        try:
            n += int((records.take(limit - n) if limit else records).reduce(tf.constant(0, tf.int64),
                                                                             lambda c, _: c + 1))
        except tf.errors.OpError as e:
            raise ExamplesError(f"Examples split {split!r}: {path} is not a complete GZIP TFRecord file: "
                                f"{_tf_words(e)}") from e
        if limit and n >= limit:
            break
    return n


def stream_examples(uri, split, feature_key="image", label_key="label", feature_shape=FASHION_MNIST_SHAPE,
                    limit=None, scale=INT_SCALE, batch_size=4096):
    """Yield (file, x float32 [n, *feature_shape], y int64 [n]) batch by batch, file by file, at most
    `limit` records in all: a split never has to fit in memory. Feature types come from the first
    record; a file that is not a GZIP TFRecord file or ends inside a record, a record that is not a
    tf.Example, or records unlike the first are ExamplesErrors naming the split and the file."""
    files = split_files(uri, split)
    parse, left = None, limit
    for path in files:
        if left is not None and left <= 0:
            break
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP")
        batches = iter((dataset.take(left) if left is not None else dataset).batch(batch_size))
        while True:
            try:
                records = next(batches, None)
            except tf.errors.OpError as e:  # DataLossError: not GZIP, truncated, corrupt
                raise ExamplesError(f"Examples split {split!r}: {path} is not a complete GZIP TFRecord file: "
                                    f"{_tf_words(e)}") from e
            if records is None:
                break
            if parse is None:
                try:
                    parse, kind, size = example_parser(records[0].numpy(), split, feature_key, label_key,
                                                       feature_shape, scale)
                except message.DecodeError as e:
                    raise ExamplesError(f"Examples split {split!r}: {path}: record 0 is not a tf.Example") from e
                shape = tuple(feature_shape) if feature_shape is not None else (size,)
            try:
                x, y = parse(records)
            except tf.errors.InvalidArgumentError as e:  # a later record lacks a key, differs in size, ...
                raise ExamplesError(f"Examples split {split!r}: {path}: records do not all match the first one "
                                    f"({kind} of {size} values for {feature_key!r}): {_tf_words(e)}") from e
            if left is not None:
                left -= len(y)
            yield path, x.numpy().reshape((-1,) + shape), y.numpy()
    if parse is None:
        raise ExamplesError(f"Examples split {split!r} has no records ({len(files)} file(s))")


def read_examples(uri, split, feature_key="image", label_key="label", feature_shape=FASHION_MNIST_SHAPE,
                  limit=None, scale=INT_SCALE):
    """Read a split into (x float32 [N, *feature_shape], y int64 [N]), through stream_examples (the
    same feature types, scaling and errors)."""
    xs, ys = [], []
    for _, x, y in stream_examples(uri, split, feature_key, label_key, feature_shape, limit, scale):
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
