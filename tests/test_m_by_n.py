"""2:4 structured sparsity (issue 23): the preservation gate checks the M:N pattern per aligned group
in the INT8 flatbuffer and names the layers that lost it; Ethos-U85 (only) runs a kept pattern in
fewer cycles; a run whose targets are all Ethos-U55/U65 says in one line that 2:4 saves flash there."""
import logging
import os

import numpy as np
import pytest

from collabopt.core import artifact_files, stages
from collabopt.core.evaluation import gates
from collabopt.core.model import keras_io
from collabopt.core.npu import vela
from collabopt.core.tflite import flatbuffer
from collabopt.core.tfenv import keras
from collabopt.tests.helpers import fashion_mnist_examples

L = keras.layers
PROMISE = {"target_sparsity": 0.5, "m_by_n": [2, 4]}  # what stages.prune promises with m_by_n: [2, 4]


def _two_of_four(kernel, rng, broken=False):
    """The kernel with 2 zeros in every aligned group of 4 input channels (axis -2 of a Keras
    Conv2D HWIO kernel, axis 0 of a Dense IO one); `broken`: the same number of zeros, but 3 and 1
    in alternate groups (TFMOT's total sparsity, not its pattern)."""
    w = np.moveaxis(kernel, -2 if kernel.ndim == 4 else 0, -1)  # input channels last
    groups = w.reshape(-1, 4)
    zeros = np.zeros_like(groups, dtype=bool)
    for i in range(len(groups)):
        k = (3 if i % 2 == 0 else 1) if broken else 2
        zeros[i, rng.permutation(4)[:k]] = True
    w = np.where(zeros, 0.0, groups).reshape(w.shape)
    return np.moveaxis(w, -1, -2 if kernel.ndim == 4 else 0)


def _model(broken_layer=None):
    """A small CNN on 28x28x1 whose c2, c3 and fc kernels hold 2:4 sparsity (c1 has one input channel:
    TFMOT pads its groups and prunes nothing); `broken_layer` keeps 50% zeros in another arrangement.
    c3 is compute-bound with 128 input channels: on Ethos-U85-256 Vela's sparse IFM block is 128 deep,
    so narrower layers gain nothing and memory-bound ones little."""
    rng = np.random.default_rng(0)
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(128, 3, padding="same", activation="relu", name="c2")(x)
    x = L.Conv2D(128, 3, padding="same", activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(10, name="fc")(x))
    for name in ("c2", "c3", "fc"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        big = np.sign(rng.standard_normal(kernel.shape)) * rng.uniform(0.5, 1.0, kernel.shape)  # no int8 zero
        layer.set_weights([_two_of_four(big, rng, broken=name == broken_layer).astype("float32"), bias])
    return model


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return stages.DataSpec(fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=64,
                                                  eval_limit=32))


def _leaf(model, spec, out):
    """stages.to_tflite of `model` saved as a 2:4-pruned stage saves it (its promises beside it)."""
    model_dir = os.path.join(out, "model")
    keras_io.save_model(model, os.path.join(model_dir, artifact_files.MODEL_DIR))
    artifact_files.write_json(os.path.join(model_dir, artifact_files.STATS_FILE), {"promises": PROMISE})
    stats = stages.to_tflite(model_dir, spec, os.path.join(out, "tflite"), representative_samples=16,
                             evaluate=False)
    return os.path.join(out, "tflite", artifact_files.TFLITE_FILE), stats


def test_m_by_n_groups_are_counted_along_the_input_channels():
    w = np.array([[1, 0, 2, 0, 3, 4, 0, 5, 6]], np.int8)  # one output channel, 9 inputs: groups 4, 4, 1+pad
    assert flatbuffer.m_by_n_broken(w) == (1, 3)  # [3, 4, 0, 5] holds one zero; [6, pad x3] keeps the pattern
    assert flatbuffer.m_by_n_broken(w, (1, 4)) == (0, 3)
    ohwi = np.zeros((2, 3, 3, 8), np.int8)
    ohwi[1, 2, 0, :3] = 7  # one kernel position of one output channel: 3 non-zeros in its first group
    assert flatbuffer.m_by_n_broken(ohwi) == (1, 2 * 3 * 3 * 2)


def test_the_gate_names_the_layers_whose_flatbuffer_lost_2_4_and_vela_u85_sees_it(spec, tmp_path):
    """The old gate judged an m_by_n promise by its M/N sparsity alone: it passed a kernel whose zeros
    were rearranged (Vela encodes it dense, the U85 gain is lost) and failed c1, whose one input
    channel TFMOT cannot prune 2:4."""
    kept_file, kept = _leaf(_model(), spec, str(tmp_path / "kept"))
    lost_file, lost = _leaf(_model(broken_layer="c3"), spec, str(tmp_path / "lost"))
    by_layer = {l["layer"]: l for l in lost["layers"]}
    assert by_layer["c3"]["sparsity"] == pytest.approx(0.5) and by_layer["c1"]["sparsity"] < 0.05
    assert kept["preservation_failures"] == []
    assert lost["preservation_failures"] == [
        "c3: 18432 of 36864 aligned groups of 4 input channels hold fewer than 2 zeros (2:4 sparsity lost)"]
    assert gates.gate({**lost, "int8_accuracy": 0.5, "npu": {}}, {}, 0.5) == [
        "preservation: " + lost["preservation_failures"][0]]
    # what the pattern buys: Vela 5.2 halves the MAC cycles of the 2:4 layers on Ethos-U85 only
    cycles = {(name, acc): vela.compile_for_npu(f, str(tmp_path / name / acc), acc)["npu_cycles"]
              for name, f in (("kept", kept_file), ("lost", lost_file)) for acc in ("ethos-u85-256", "ethos-u55-128")}
    assert cycles["kept", "ethos-u85-256"] < 0.95 * cycles["lost", "ethos-u85-256"]
    # U55: MAC cycles from shapes alone; only the weight stream differs (a few cycles: 303,651 vs 303,683)
    assert cycles["kept", "ethos-u55-128"] == pytest.approx(cycles["lost", "ethos-u55-128"], rel=1e-3)


def test_a_per_layer_promise_without_m_by_n_is_judged_by_sparsity_as_before():
    layer = {"op": "CONV_2D", "layer": "c", "sparsity": 0.3, "max_unique_per_channel": 9, "m_by_n": [2, 4],
             "m_by_n_broken": 5, "m_by_n_groups": 8}
    assert gates.preservation([layer], {"target_sparsity": 0.5}) == ["c: sparsity 0.300 < 0.480"]
    assert gates.preservation([layer], PROMISE, excluded={"prune": {"c": "left out"}}) == []
    assert gates.preservation([{**layer, "m_by_n": [1, 4]}], PROMISE) == [
        "c: its 2:4 pattern was not counted in the flatbuffer"]


def test_a_u55_u65_only_run_with_m_by_n_says_2_4_saves_flash_not_time(tmp_path, caplog):
    from collabopt.pipelines import config as tree_config, tree
    config = {"name": "mbyn", "paths": ["prune_ptq"], "prune": {"m_by_n": [2, 4]},
              "npu": {"targets": ["ethos-u55-128", "ethos-u65-256"]}}
    with caplog.at_level(logging.INFO, logger="collabopt"):
        tree.create_pipeline(config, str(tmp_path / "root"), str(tmp_path / "m.sqlite"))
    assert [r.getMessage() for r in caplog.records if "m_by_n" in r.getMessage()] == [
        "prune.m_by_n 2:4 saves flash on ethos-u55-128, ethos-u65-256, not time: only Ethos-U85 skips 2:4-sparse "
        "weights (an ethos-u85 target shows the gain)"]
    for other in ({"npu": {"targets": ["ethos-u55-128", "ethos-u85-256"]}}, {"paths": ["cluster_ptq"]},
                  {"prune": {"m_by_n": None}}):
        assert tree.m_by_n_note(tree_config.merge({**config, **other})) is None, other
