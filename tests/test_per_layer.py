"""Per-layer sparsity / cluster counts ({layer: value}) through the real stages: the INT8 flatbuffer
holds each layer's own target, the layers not named stay dense, and the preservation gate judges
each layer against its own promise."""
import os

import pytest

from collabopt import schemas
from collabopt.core.tflite import flatbuffer
from collabopt.core import artifact_files, stages
from collabopt.core.evaluation import gates
from collabopt.core.model import baseline, keras_io
from collabopt.tests.helpers import fashion_mnist_examples

SPARSITY = {"pw_1": 0.8, "pw_2": 0.4}
CLUSTERS = {"pw_1": 4, "logits": 16}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return fashion_mnist_examples(tmp_path_factory.mktemp("examples"), train_limit=256, eval_limit=64)


def test_flatbuffer_holds_each_layers_own_target(examples, tmp_path):
    base = str(tmp_path / "base")
    keras_io.save_model(baseline.ds_cnn(width=32, blocks=2), os.path.join(base, artifact_files.MODEL_DIR))
    spec, fit = stages.DataSpec(examples), stages.FitSpec(epochs=1, batch_size=64)
    stages.prune(base, spec, str(tmp_path / "p"), schedule="constant", frequency=1, layer_sparsity=SPARSITY, fit=fit)
    stages.cluster(str(tmp_path / "p"), spec, str(tmp_path / "c"), layer_clusters=CLUSTERS, fit=fit)
    stats = stages.to_tflite(str(tmp_path / "c"), spec, str(tmp_path / "t"), representative_samples=32,
                             evaluate=False)
    assert stats["promises"] == {"target_sparsity": None, "layer_sparsity": SPARSITY, "number_of_clusters": None,
                                 "layer_clusters": CLUSTERS, "per_channel": False}
    assert stats["preservation_failures"] == []
    layers = {l["layer"]: l for l in flatbuffer.layer_stats(open(tmp_path / "t" / artifact_files.TFLITE_FILE, "rb").read())}
    for name, s in SPARSITY.items():
        assert layers[name]["sparsity"] == pytest.approx(s, abs=0.02)
    # not named: dense (a few int8 codes round to 0; logits is clustered, not pruned)
    assert layers["conv_1"]["sparsity"] < 0.05 and layers["conv_1"]["unique_per_tensor"] > 16
    # clusters: pw_1 (sparse) keeps its zero as one of its 4 values; logits has 16 per output channel
    # (PTQ gives each channel its own scale, so per tensor the codes differ)
    assert layers["pw_1"]["max_unique_per_channel"] <= 4 and layers["logits"]["max_unique_per_channel"] <= 16
    assert layers["pw_2"]["unique_per_tensor"] > 16  # pruned, not clustered
    # the gate judges each layer against its own promise: pw_2 promised 0.4, not pw_1's 0.8
    assert gates.preservation(list(layers.values()), {"layer_sparsity": {"pw_2": 0.9}}) == [
        f"pw_2: sparsity {layers['pw_2']['sparsity']:.3f} < 0.880"]


def test_per_layer_maps_are_checked():
    with pytest.raises(schemas.ConfigError, match=r"prune\.layer_sparsity\.pw_1: 1\.5 is greater than or equal "
                                                  r"to the maximum of 1"):
        schemas.check({"prune": {"layer_sparsity": {"pw_1": 1.5}}})
    with pytest.raises(schemas.ConfigError, match=r"cluster\.layer_clusters\.pw_1: 1 is less than the minimum of 2"):
        schemas.check({"cluster": {"layer_clusters": {"pw_1": 1}}})
    with pytest.raises(schemas.ConfigError, match=r"prune\.layer_sparsity: not with m_by_n"):
        schemas.check({"prune": {"layer_sparsity": {"pw_1": 0.5}, "m_by_n": [2, 4]}})
