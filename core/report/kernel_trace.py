"""One kernel followed through a path's stages (baseline -> pruned -> clustered -> int8 codes):
the data of the report's density figure, carried from artifact to artifact in kernels.npz."""
import os

import numpy as np

from collabopt.core.model import keras_io
from collabopt.core.techniques import optimize
from collabopt.core.artifact_files import KERNELS_FILE


def sample_kernel(model):
    """(layer name, kernel) of the largest Conv2D/Dense kernel: the one followed through the stages."""
    layers = [(layer, w) for layer, w in optimize._kernels(model)  # noqa: SLF001
              if not isinstance(layer, keras_io.keras.layers.DepthwiseConv2D)]
    if not layers:
        return None, None
    layer, w = max(layers, key=lambda lw: lw[1].size)
    return layer.name, w


def history(model_path, model=None):
    """(layer, {stage: kernel}) carried in the model artifact; a model from outside collabopt
    starts its history as 'baseline'."""
    path = os.path.join(str(model_path), KERNELS_FILE)
    if os.path.isfile(path):
        with np.load(path) as z:
            return str(z["__layer__"]), {k: z[k] for k in z.files if k != "__layer__"}
    if model is None:
        return None, {}
    layer, w = sample_kernel(model)
    return layer, ({"baseline": w} if layer else {})


def model_without_history(model_path):
    """The Keras model, only when its kernel history is not already in the artifact (outside models)."""
    if os.path.isfile(os.path.join(str(model_path), KERNELS_FILE)):
        return None
    try:
        return keras_io.load_model(model_path, check=False)
    except keras_io.ModelError:  # e.g. a QAT model saved outside collabopt: no history, no plot
        return None


def save(out_dir, layer, stages):
    if layer:
        np.savez_compressed(os.path.join(out_dir, KERNELS_FILE), __layer__=np.array(layer), **stages)
