"""Full-INT8 TFLite conversion: from a QAT model (ranges learned) or PTQ with representative data."""
import warnings

from collabopt.core import tree_paths
from collabopt.core.tfenv import tf


CONVERSION = "INT8 conversion"  # the crash reason's subject: "INT8 conversion crashed (signal 11)"


def _int8_converter(converter, representative_data=None):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if representative_data is not None:
        converter.representative_dataset = representative_data
    return converter


def _convert(converter):
    # TF 2.x's converter warns on every INT8-input conversion that it has no (mean, std) "statistics
    # for quantized inputs"; those are a TF1 option: the input scale comes from QAT or calibration.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected",
                                category=UserWarning)
        with tree_paths.refused("the INT8 converter refused the model"):
            return converter.convert()


def representative(x, num_samples=100):
    """A representative_dataset callable over the first `num_samples` rows of x (float32)."""
    def gen():
        for i in range(min(num_samples, len(x))):
            yield [x[i:i + 1].astype("float32")]
    return gen


def to_int8(model, representative_data=None):
    """INT8 .tflite bytes from a Keras model (QAT, or float with representative data for PTQ)."""
    return _convert(_int8_converter(tf.lite.TFLiteConverter.from_keras_model(model), representative_data))


def saved_model_to_int8(saved_model_dir, representative_data=None):
    """INT8 .tflite bytes from a SavedModel's serving signature (works for QAT models without
    re-creating TFMOT's quantizers in Keras)."""
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    return _convert(_int8_converter(conv, representative_data))


def _from_samples(saved_model_dir, samples):
    return saved_model_to_int8(saved_model_dir, (lambda: iter(samples)) if samples is not None else None)


def isolated_saved_model_to_int8(saved_model_dir, representative_data=None):
    """saved_model_to_int8 in a child process (core/isolation.py): the calibrator is native code and
    has segfaulted (a batch-1 GRU); a crash raises isolation.CrashedError, a PathError."""
    from collabopt.core import isolation

    samples = list(representative_data()) if representative_data is not None else None  # picklable
    return isolation.call(_from_samples, str(saved_model_dir), samples, what=CONVERSION)
