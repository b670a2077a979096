"""Layer coverage as a contract (issue 20): every model of the zoo (tests/zoo_models.py: keras.applications
MobileNetV2, MobileNetV3 Small/Large with and without minimalistic, EfficientNetB0; hand-built Conv1D,
SeparableConv2D, LSTM and GRU keyword spotters) through `paths: all` with `collabopt run` on tiny
data: all 8 leaves, each full INT8 (every kernel, input and output, read from its flatbuffer) with
Vela numbers; the layers a technique left out named in the report; the Conv1D and SeparableConv2D
models' PCQAT leaves keep their zeros and clusters (the preservation gate passes).

Minutes per model: `make test-zoo` runs it, `make test` leaves it out (marker `zoo`)."""
import html
import os

import pytest

from collabopt.core import artifact_files, tree_paths
from collabopt.tests import zoo_models

pytestmark = [pytest.mark.zoo, pytest.mark.slow]


@pytest.mark.parametrize("name", list(zoo_models.MODELS))
def test_every_zoo_model_yields_every_leaf_full_int8_with_vela_numbers(name, tmp_path):
    code, log, root = zoo_models.run(name, str(tmp_path))
    assert code == 0, log[-3000:]
    leaves = zoo_models.leaves(root)
    assert list(leaves) == tree_paths.expand("all")
    for path, leaf in leaves.items():
        assert not leaf["failed"], (path, leaf["error"])
        assert leaf["kernels_int8"] and leaf["io_int8"], path
        assert leaf["npu"][zoo_models.TARGET]["cycles"] > 0, path
    with open(os.path.join(root, artifact_files.REPORT_FILE)) as f:
        page = f.read()
    for path, leaf in leaves.items():
        for technique, layers in leaf[artifact_files.EXCLUDED_LAYERS].items():
            for layer, why in layers.items():
                assert (f'<td class="l">{path}</td><td class="l">{technique}</td><td class="l">{html.escape(layer)}</td>'
                        f'<td class="l">{html.escape(why)}</td>') in page
    if name in zoo_models.PRESERVED:
        pcqat = leaves["prune_cluster_pcqat"]
        assert not [r for r in pcqat["reasons"] if r.startswith("preservation")], pcqat["reasons"]
        # ... and judged every kernel: no conv layer was left out of pruning, clustering or QAT
        left_out = {layer for layers in pcqat[artifact_files.EXCLUDED_LAYERS].values() for layer in layers}
        assert not set(zoo_models.PRESERVED[name]) & left_out, left_out
