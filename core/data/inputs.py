"""How data gets into a model: the one home of the tf.data pipelines every stage reads.

Fine-tuning, the Keras-side evaluation, the representative dataset and the Beam evaluation all read
the TFRecords batch by batch (bounded shuffle buffer, prefetch): memory does not grow with the
split. The records are parsed by data.example_parser (one feature, `data.feature_key`), or by the
`input_fn` of a user's TFX-style module file (any features, e.g. one per input of a multi-input
model, keyed by the model's input names).
"""
import dataclasses
import math

from collabopt.core.data import examples_io, user_module
from collabopt.core.evaluation.metrics import FEATURES, LABEL  # noqa: F401 (training.target: inputs.LABEL/FEATURES)
from collabopt.core.tfenv import tf
SHUFFLE_BUFFER = 4096  # serialized records: bounds fine-tuning memory whatever the split's size
EVAL_BATCH = 256
AUTOTUNE = tf.data.AUTOTUNE


def _cap(*limits):
    """The smallest of the limits that are set (0: none is)."""
    return min((x for x in limits if x), default=0)


@dataclasses.dataclass
class DataSpec:
    """Where the tf.Examples are and how a model reads them (config sections `data` and `training`)."""
    examples_uri: str
    feature_key: str = "image"
    label_key: str = "label"
    feature_shape: tuple = examples_io.FASHION_MNIST_SHAPE
    train_split: str = "train"
    eval_split: str = "eval"
    train_limit: int = 0  # 0: the whole split
    eval_limit: int = 0
    scale: float = examples_io.INT_SCALE  # multiplies integer-valued features (data.example_parser)
    target: str = LABEL
    module_file: str = None  # a TFX-style module file whose input_fn reads the records instead

    def train_cap(self, limit=0):
        """How many train records a reader capped at `limit` reads (0: all)."""
        return _cap(self.train_limit, limit)

    def eval_cap(self, limit=0):
        return _cap(self.eval_limit, limit)

    def train_dataset(self, batch_size, limit=0, seed=0):
        """Shuffled (bounded buffer, reshuffled each epoch) train batches, with a known cardinality
        (counted without parsing), so a pruning schedule can know its steps per epoch."""
        ds = self._dataset(self.train_split, batch_size, self.train_cap(limit), training=True, seed=seed)
        return ds.apply(tf.data.experimental.assert_cardinality(self._num_batches(ds, batch_size, limit)))

    def eval_dataset(self, batch_size=EVAL_BATCH, limit=0):
        """The eval split's (features, labels) batches, in file order: evaluation compares the output
        with the labels or, target=features, with the features (core.metrics), and an autoencoder's AUC
        needs the labels too."""
        return self._dataset(self.eval_split, batch_size, self.eval_cap(limit))

    def representative(self, n):
        """A converter representative_dataset over the first `n` train examples (within train_limit),
        one at a time: [array] for one input, or {input name: array} as the SavedModel signature
        names them (the calibrator feeds each input by name)."""
        ds = self._dataset(self.train_split, min(n, 64), self.train_cap(n))

        def gen():
            for features, _ in ds.as_numpy_iterator():
                rows = len(next(iter(features.values())) if isinstance(features, dict) else features)
                for i in range(rows):
                    yield ({k: v[i:i + 1] for k, v in features.items()} if isinstance(features, dict)
                           else [features[i:i + 1]])
        return gen

    def batches(self, split, files, batch_size=EVAL_BATCH):
        """NumPy (features, targets) batches of every record of `files` (some data files of `split`,
        e.g. one per Beam element), in order, for evaluation. features: float32 [n, *feature_shape], or a
        dict {model input name: array} from a module_file's input_fn; targets: the labels (as
        eval_dataset). No limit applies: the caller chose the files."""
        yield from self._dataset(split, batch_size, files=list(files)).as_numpy_iterator()

    def _dataset(self, split, batch_size, limit=0, *, training=False, seed=0, files=None):
        files = examples_io.split_files(self.examples_uri, split) if files is None else files
        if self.module_file:
            ds = user_module.call(self.module_file, user_module.INPUT_FN, files, batch_size, split, training)
            if not isinstance(ds, tf.data.Dataset):
                raise user_module.UserModuleError(f"{self.module_file!r}: input_fn returned a "
                                                  f"{type(ds).__name__}, not a tf.data.Dataset")
            if limit:
                ds = ds.unbatch().take(limit).batch(batch_size)
            return ds.prefetch(AUTOTUNE)
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
        if limit:
            ds = ds.take(limit)
        if training:
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).map(self._parser(split, files, training), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    def _parser(self, split, files, training=False):
        """(x, y) from a batch of serialized records, typed from the first record of `files`; (x, x)
        for fine-tuning with target=features."""
        first = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)), None)
        if first is None:
            return lambda records: (tf.zeros((0, *self.feature_shape)), tf.zeros((0,), tf.int64))
        parse, _, _ = examples_io.example_parser(first.numpy(), split, self.feature_key, self.label_key,
                                          tuple(self.feature_shape), self.scale)
        shape = (-1, *self.feature_shape)

        def parse_batch(records):
            x, y = parse(records)
            x = tf.reshape(x, shape)
            return (x, x) if training and self.target == FEATURES else (x, y)
        return parse_batch

    def count(self, split, limit=0):
        """Records of `split` (at most `limit`; 0: all), counted without parsing them."""
        records = tf.data.TFRecordDataset(examples_io.split_files(self.examples_uri, split), compression_type="GZIP")
        return int((records.take(limit) if limit else records).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))

    def _num_batches(self, ds, batch_size, limit):
        """Batches per epoch: the records counted unparsed (a module_file's batches counted as they
        come: its input_fn may drop or group records); memory-flat either way."""
        if self.module_file:
            return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        return math.ceil(self.count(self.train_split, self.train_cap(limit)) / batch_size)
