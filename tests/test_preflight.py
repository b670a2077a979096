"""The pre-flight: the baseline is converted to full INT8 once before any node fine-tunes, so a model
the converter refuses (an op TFLite has no builtin for) stops `collabopt run` in seconds with one
line naming the model and the converter's first error, its Preflight execution FAILED in MLMD and no
fine-tuning node executed."""
import time

import pytest

import yaml

from collabopt.core.tflite import preflight
from collabopt.mlmd import results
from collabopt.tests.cli_processes import collabopt
from collabopt.tests.helpers import fashion_mnist_examples, save_model_dir

# What TF 2.21's converter says about a dynamic-batch LSTM (the head of its 48 lines; fd 2 gets the rest)
CONVERTER_ERROR = (
    '<unknown>:0: error: loc(callsite(fused["TensorListReserve:", "TensorArrayV2_1@__inference_standard_lstm_694"] '
    'at callsite(fused["PartitionedCall:", "model/lstm/PartitionedCall@__inference__wrapped_model_979"] at '
    'fused["StatefulPartitionedCall:", "StatefulPartitionedCall"]))): \'tf.TensorListReserve\' op requires '
    'element_shape to be static during TF Lite transformation pass\n'
    '<unknown>:0: note: loc(fused["StatefulPartitionedCall:", "StatefulPartitionedCall"]): called from\n'
    '<unknown>:0: error: Lowering tensor list ops is failed. Please consider using Select TF ops\n')
REASON = "'tf.TensorListReserve' op requires element_shape to be static during TF Lite transformation pass"
INVERSE = "'tf.MatrixInverse' op is neither a custom op nor a flex op"
FINE_TUNING = ("Pruner", "SparseClusterer", "Clusterer", "QAT", "PQAT", "CQAT", "PCQAT", "ChannelPruner")


def test_converter_reason_is_its_first_error_without_the_mlir_location():
    assert preflight.converter_reason(CONVERTER_ERROR) == f"{REASON} (layer 'lstm')"
    assert preflight.converter_reason("\n  something else went wrong  \nmore") == "something else went wrong"


def unconvertible_model():
    """A model with an op TFLite has no builtin for (a matrix inverse): no path could convert it."""
    from collabopt.core.tfenv import keras, tf
    L = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Reshape((28, 28), name="rows")(inp)
    x = L.Flatten()(tf.linalg.inv(x[:, :8, :8] + tf.eye(8)))
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="inverse")


@pytest.mark.slow  # the run stops in ~11 s; the forkserver's imports take a minute on a shared machine
def test_a_model_the_converter_refuses_stops_the_run_before_any_fine_tuning(tmp_path):
    model = save_model_dir(str(tmp_path / "inverse"), unconvertible_model())
    examples = fashion_mnist_examples(tmp_path / "examples", 200, 50)
    config = tmp_path / "inverse.yaml"
    config.write_text(yaml.safe_dump({
        "name": "preflight", "paths": "all", "examples": {"uri": examples}, "baseline": {"model_uri": model},
        "npu": {"targets": ["ethos-u55-128"]}}))
    collabopt("run", "--help", log=tmp_path / "warm.log")  # the forkserver imports TF, TFX and Beam once
    started = time.monotonic()
    code, log = collabopt("run", str(config), "--root", str(tmp_path / "run"), log=tmp_path / "run.log")
    seconds = time.monotonic() - started
    assert code == 1, log[-3000:]
    assert seconds < 60, seconds
    print(f"preflight: the run stopped after {seconds:.1f} s")
    line = (f"collabopt run: node Preflight failed: baseline model {model!r} cannot be converted to full INT8: "
            f"{INVERSE} (layer 'tf.linalg.inv')")
    assert log.splitlines()[-1] == line
    assert log.count(INVERSE) == 1, log[-5000:]  # not once per node, nor the converter's MLIR dump
    assert "tf.MatrixInverse(tensor" not in log and "Traceback" not in log
    store = results.connect(str(tmp_path / "run" / "metadata.sqlite"))
    states = {e["node"]: e["state"] for e in results.executions(store)}
    assert states["Preflight"] == "FAILED"
    assert not set(states) & set(FINE_TUNING) and not any(n.startswith(("Convert_", "NPU_")) for n in states), states
