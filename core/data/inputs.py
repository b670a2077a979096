"""How data gets into a model: the one home of the tf.data pipelines every stage reads.

Fine-tuning, the Keras-side evaluation, the representative dataset and the Beam evaluation all read
the TFRecords batch by batch (bounded shuffle buffer, prefetch): memory does not grow with the
split. The records are parsed by data.example_parser (one feature, `data.feature_key`), or by the
`input_fn` of a user's TFX-style module file (any features, e.g. one per input of a multi-input
model, keyed by the model's input names).
"""
import dataclasses
import math

from collabopt.core.data import examples_io, tfx_input, user_module
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

    def __post_init__(self):
        if isinstance(self.scale, str):  # data.scale auto is the model's to settle: core/data/scale.resolve
            raise TypeError(f"DataSpec.scale: a number, got {self.scale!r} (core.data.scale.resolve it first)")

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

    def stream(self, split, limit=0, *, training=False, batch_size=EVAL_BATCH):
        """The (features, targets) batches of `split` as a stage reads them (at most `limit`; 0: all,
        one epoch of a module file's input_fn; `training`: as fine-tuning reads it): what core/checks.py
        streams."""
        return self._dataset(split, batch_size, limit, training=training)

    def batches(self, split, files, batch_size=EVAL_BATCH):
        """NumPy (features, targets) batches of every record of `files` (some data files of `split`,
        e.g. one per Beam element), in order, for evaluation. features: float32 [n, *feature_shape], or a
        dict {model input name: array} from a module_file's input_fn; targets: the labels (as
        eval_dataset). No limit applies: the caller chose the files."""
        yield from self._dataset(split, batch_size, files=list(files)).as_numpy_iterator()

    def _dataset(self, split, batch_size, limit=0, *, training=False, seed=0, files=None):
        files = examples_io.split_files(self.examples_uri, split) if files is None else files
        if self.module_file:
            return self._module_dataset(split, files, batch_size, limit, training)
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
        if limit:
            ds = ds.take(limit)
        if training:
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).map(self._parser(split, files, training), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    def _module_dataset(self, split, files, batch_size, limit, training):
        """The module file's input_fn dataset read for one epoch: at most as many examples as `files`
        hold records (at most `limit`), so an endless dataset (.repeat(), TFX's num_epochs=None) ends
        and nothing is read "to the end" of a dataset that has none."""
        cap = examples_io.count_records(files, limit, split)
        ds = module_input(self.module_file, files, batch_size, split, training, self.label_key)
        try:
            return ds.unbatch().take(cap).batch(batch_size).prefetch(AUTOTUNE)
        except (ValueError, TypeError) as e:  # e.g. scalar components: not batches
            raise user_module.UserModuleError(f"{self.module_file!r}: input_fn(...) returned a dataset of "
                                              f"{ds.element_spec}, not batches: {e}") from e

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
        if self.module_file:  # bounded: _module_dataset reads one epoch
            return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        return math.ceil(self.count(self.train_split, self.train_cap(limit)) / batch_size)


def module_input(path, files, batch_size, split, training, label_key):
    """The dataset the input_fn of the module file at `path` returns for `files`: called as
    input_fn(file_pattern, batch_size, split, training), or a TFX Trainer module's by its parameter
    names (core/tfx_input.py). UserModuleError unless it is a dataset of (features, targets) pairs."""
    fn = getattr(user_module.load(path), user_module.INPUT_FN)
    if tfx_input.is_tfx_input_fn(fn):
        try:
            kwargs = tfx_input.arguments(fn, files, batch_size, label_key)
        except ValueError as e:
            raise user_module.UserModuleError(f"{path!r}: {e}") from None
        ds = user_module.call(path, user_module.INPUT_FN, **kwargs)
    else:
        ds = user_module.call(path, user_module.INPUT_FN, files, batch_size, split, training)
    if not isinstance(ds, tf.data.Dataset):
        raise user_module.UserModuleError(f"{path!r}: input_fn returned a {type(ds).__name__}, not a tf.data.Dataset")
    if not (isinstance(ds.element_spec, tuple) and len(ds.element_spec) == 2):
        hint = " (a TFX input_fn: give TensorFlowDatasetOptions a label_key)" if tfx_input.is_tfx_input_fn(fn) else ""
        raise user_module.UserModuleError(f"{path!r}: input_fn returned a dataset of {_spec(ds.element_spec)}, "
                                          f"not of (features, targets) pairs{hint}")
    return ds


def _spec(element_spec, limit=200):
    text = " ".join(str(element_spec).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
