"""A TFX Trainer module's `input_fn(file_pattern, data_accessor, tf_transform_output, batch_size)`, run
unchanged (no `tfx` import: tfx_bsl and tensorflow_transform, which TFX itself reads data with).

What it gets, by parameter name (TFX's own conventions; core/user_module.py calls it):
- `data_accessor`: a DataAccessor over the tf.Example records whose `tf_dataset_factory(file_pattern,
  options, schema)` is TFX's own reader (tfx_bsl's TFExampleRecord.TensorFlowDataset): every field
  of tfx_bsl's TensorFlowDatasetOptions is honoured (batch_size, label_key, num_epochs, shuffle, ...);
- `schema`: a tensorflow_metadata Schema of the records, inferred from the first one (each feature a
  fixed-length feature of its type and length, as TFX's SchemaGen infers shapes);
- `tf_transform_output`: the identity transform over that schema (collabopt runs no Transform: the
  Examples are the data the model takes, e.g. a Transform's transformed_examples), so the usual
  `tf_transform_output.transformed_metadata.schema` works; `transform_features_layer()` does not;
- `batch_size`; `label` / `label_key`: data.label_key.
A dataset that never ends (`.repeat()`, num_epochs=None) is fine: inputs.DataSpec reads one epoch of
it (as many examples as the files hold records, or the configured limit).
"""
import inspect

from collabopt.core.tfenv import tf

DATA_ACCESSOR = "data_accessor"
_KINDS = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}


def is_tfx_input_fn(fn):
    """Is `fn` a TFX Trainer module's input_fn (it takes a data_accessor)?"""
    try:
        return DATA_ACCESSOR in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def feature_spec(files):
    """{feature: tf.io.FixedLenFeature([length], dtype)} of the first record of `files` (None if empty)."""
    first = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)), None)
    if first is None:
        return None
    spec = {}
    for key, feature in tf.train.Example.FromString(first.numpy()).features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind:
            spec[key] = tf.io.FixedLenFeature([len(getattr(feature, kind).value)], _KINDS[kind])
    return spec


def schema_of(files):
    """The tensorflow_metadata Schema of the records of `files` (feature_spec)."""
    from tensorflow_transform.tf_metadata import schema_utils
    return schema_utils.schema_from_feature_spec(feature_spec(files) or {})


class DataAccessor:
    """What TFX's Trainer passes as fn_args.data_accessor, for tf.Example records."""

    def __init__(self, schema=None):
        self.schema = schema

    def tf_dataset_factory(self, file_pattern, options, schema=None):
        """(features, label) batches (label_key set) or feature batches of the records matching
        `file_pattern`, read as TFX reads them (tfx_bsl TFExampleRecord, `options` honoured)."""
        from tfx_bsl.public import tfxio
        return tfxio.TFExampleRecord(list(file_pattern) if not isinstance(file_pattern, str) else file_pattern,
                                     schema=schema if schema is not None else self.schema).TensorFlowDataset(options)

    def record_batch_factory(self, *args, **kwargs):
        raise NotImplementedError("collabopt's data_accessor gives tf.data datasets only (tf_dataset_factory)")

    data_view_decode_fn = None


class _Metadata:
    def __init__(self, schema):
        self.schema = schema


class TransformOutput:
    """The identity transform: tf_transform_output for a module run without a Transform."""

    def __init__(self, schema):
        self.raw_metadata = self.transformed_metadata = _Metadata(schema)

    def transformed_feature_spec(self):
        from tensorflow_transform.tf_metadata import schema_utils
        return schema_utils.schema_as_feature_spec(self.transformed_metadata.schema).feature_spec

    raw_feature_spec = transformed_feature_spec

    def transform_features_layer(self):
        raise NotImplementedError("collabopt runs no Transform: tf_transform_output is the identity (the Examples "
                                  "are what the model takes)")


def arguments(fn, files, batch_size, label_key):
    """input_fn's arguments by its parameter names (ValueError naming one it cannot be given)."""
    params = list(inspect.signature(fn).parameters.values())
    schema = schema_of(files)
    given = {DATA_ACCESSOR: lambda: DataAccessor(schema), "tf_transform_output": lambda: TransformOutput(schema),
             "schema": lambda: schema, "batch_size": lambda: batch_size, "label": lambda: label_key,
             "label_key": lambda: label_key}
    out = {}
    for i, p in enumerate(params):
        if i == 0:
            out[p.name] = list(files)  # file_pattern, whatever its name
        elif p.name in given:
            out[p.name] = given[p.name]()
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"input_fn takes {p.name!r}, which collabopt does not give (a TFX input_fn gets "
                             f"file_pattern, {', '.join(given)})")
    return out

