"""The collabopt TFX components (one folder each: component spec, executor, README)."""
from collabopt.components.artifacts import NPUModel, TFLiteModel
from collabopt.components.baseline_trainer.component import BaselineTrainer
from collabopt.components.examples_gen.component import FashionMnistExampleGen
from collabopt.components.npu_compiler.component import NPUCompiler
from collabopt.components.preserving_qat.component import PreservingQAT
from collabopt.components.pruner.component import Pruner
from collabopt.components.sparse_clusterer.component import SparseClusterer
from collabopt.components.tflite_converter.component import TFLiteConverter

__all__ = ["BaselineTrainer", "FashionMnistExampleGen", "NPUCompiler", "NPUModel", "PreservingQAT",
           "Pruner", "SparseClusterer", "TFLiteConverter", "TFLiteModel"]
