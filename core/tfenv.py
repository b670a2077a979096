"""Import TensorFlow only after TF_USE_LEGACY_KERAS=1 is set: TFMOT needs tf_keras, not Keras 3."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
