"""TFLM's interpreter on real INT8 models (core/firmware/tflm.py): its answers next to LiteRT's (LSBs,
top-1, the metric) and the tensor arena it needs."""
import types

import numpy as np
import pytest

from collabopt.core.firmware import tflm
from collabopt.core.model.train import TrainingSpec
from collabopt.tests.firmware_models import NAMES
from collabopt.tests.helpers import tflm_child


def _batches(x, y, size=50):
    return ((x[s:s + size], y[s:s + size]) for s in range(0, len(x), size))


@pytest.mark.parametrize("name", NAMES)
def test_tflm_answers_match_litert(firmware_models, firmware_data, name):
    x, y = firmware_data
    spec = types.SimpleNamespace(eval_metric=TrainingSpec().eval_metric, top_k=TrainingSpec().top_k)  # as isolated.py
    r = tflm_child("check", firmware_models[name], list(_batches(x, y)), spec, tflm.metrics.LABEL, 60)
    assert r["tflm_examples"] == 60 == sum(r["tflm_lsb_counts"].values())  # across two batches
    assert r["tflm_max_lsb"] <= 3, r["tflm_lsb_counts"]
    assert r["tflm_top1_differ_rate"] <= 0.05
    assert abs(r["tflm_metric"] - r["tflm_litert_metric"]) <= 0.05
    assert r["tflm_seconds"] > 0


def test_litert_side_is_the_projects_int8_outputs(firmware_models, firmware_data):
    """The LiteRT answers the check compares with are those the leaf's INT8 metric comes from."""
    from collabopt.core.tflite import flatbuffer
    m, x = firmware_models["ds_cnn"], firmware_data[0][:20]
    lite = flatbuffer.interpreter(m)
    raw = tflm.litert_outputs(lite, tflm.quantized_feeds(lite, x))[0]
    np.testing.assert_allclose(tflm.dequantized(raw, lite.get_output_details()[0]), flatbuffer.int8_outputs(m, x))


def test_tflm_keeps_no_state_between_examples(firmware_models, firmware_data):
    m = firmware_models["tiny_cnn"]
    from collabopt.core.tflite import flatbuffer
    feeds = tflm.quantized_feeds(flatbuffer.interpreter(m), firmware_data[0][:5])
    it = tflm.interpreter(m, 1 << 16)
    a, b = tflm.tflm_outputs(it, feeds)[0], tflm.tflm_outputs(it, [f[::-1] for f in feeds])[0]
    np.testing.assert_array_equal(a, b[::-1])


@pytest.mark.parametrize("name", NAMES)
def test_published_arena_allocates_and_10_percent_less_fails(firmware_models, name):
    m = firmware_models[name]
    a = tflm_child("arena", m)
    assert tflm_child("fits", m, a["published"]) and not tflm_child("fits", m, int(a["published"] * 0.9))
    # sharp: what print_allocations reports (rounded up to 16 bytes) is the smallest that allocates
    assert tflm_child("fits", m, a["minimal"]) and not tflm_child("fits", m, a["minimal"] - 16)
    assert a["minimal"] == -(-a["recorded"] // 16) * 16 and a["recorded"] == a["head"] + a["tail"]
    assert a["published"] == a["minimal"] + tflm.ALIGNMENT


def test_binary_search_agrees_with_recorded(firmware_models):
    m = firmware_models["residual_add"]
    assert tflm_child("minimal_arena", m) == tflm_child("arena", m)["minimal"]


def test_too_small_arena_raises(firmware_models):
    with pytest.raises(RuntimeError):
        tflm.interpreter(firmware_models["tiny_cnn"], 1024)


def test_parse_allocations():
    text = """[RecordingMicroAllocator] Arena allocation total 10016 bytes
[RecordingMicroAllocator] Arena allocation head 7744 bytes
[RecordingMicroAllocator] Arena allocation tail 2272 bytes
[RecordingMicroAllocator] 'Persistent buffer data' used 640 bytes with alignment overhead (requested 608 bytes for 10 allocations)
"""
    p = tflm.parse_allocations(text)
    assert (p["total"], p["head"], p["tail"]) == (10016, 7744, 2272)
    assert p["Persistent buffer data"] == {"used": 640, "requested": 608, "count": 10}


def test_vela_model_does_not_run_on_host_tflm(firmware_models):
    """The Python interpreter's ethos-u operator is a stub: the Vela model cannot be allocated."""
    with pytest.raises(RuntimeError):
        tflm.interpreter(firmware_models["vela"], 1 << 20)


def test_leaf_numbers_on_the_eval_split(firmware_models, examples_uri):
    """A leaf's device numbers: the first CHECK_EXAMPLES eval records; a model TFLM cannot allocate (the
    Vela model: its ethos-u operator is a stub) gives tflm_error and no numbers, not an exception."""
    from collabopt.core import stages
    from collabopt.core.firmware import device_check
    spec = stages.DataSpec(examples_uri=examples_uri)
    found = device_check.leaf_numbers(firmware_models["ds_cnn"], spec, TrainingSpec())
    assert found["tflm_examples"] == tflm.CHECK_EXAMPLES and found["tflm_error"] is None
    assert found[device_check.ARENA_BYTES] == tflm_child("arena", firmware_models["ds_cnn"])["published"]
    failed = device_check.leaf_numbers(firmware_models["vela"], spec, TrainingSpec())
    assert failed["tflm_error"] and all(failed[k] is None for k in device_check.FIELDS if k != "tflm_error")


def test_the_arena_probe_refuses_to_fork_a_process_running_tensorflow(firmware_models):
    """A forked copy of a process with TensorFlow's threads can deadlock (a test worker hung so): the
    probe says where to run it instead; in a process without TensorFlow it answers."""
    import sys
    assert "tensorflow" in sys.modules  # this worker built the models
    with pytest.raises(RuntimeError, match=r"^tflm.fits forks a child: call it from a process without TensorFlow "
                                           r"\(core/firmware/isolated.py\), a fork of TensorFlow's threads can hang$"):
        tflm.fits(firmware_models["ds_cnn"], 1 << 20)
    assert tflm_child("fits", firmware_models["ds_cnn"], 1 << 20) is True
