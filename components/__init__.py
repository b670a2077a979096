"""The collabopt TFX components (one folder each: component spec, executor, README)."""
from collabopt.components.artifacts import (LeafBlessing, LeafEvaluation, NPUModel, OptimizationReport,
                                            TFLiteModel)
from collabopt.components.baseline_trainer.component import BaselineTrainer
from collabopt.components.examples_gen.component import FashionMnistExampleGen
from collabopt.components.latest_pushed_model.component import LatestPushedModel
from collabopt.components.leaf_evaluator.component import LeafEvaluator
from collabopt.components.leaf_pusher.component import LeafPusher
from collabopt.components.npu_compiler.component import NPUCompiler
from collabopt.components.preserving_qat.component import PreservingQAT
from collabopt.components.pruner.component import Pruner
from collabopt.components.reporter.component import Reporter
from collabopt.components.sparse_clusterer.component import SparseClusterer
from collabopt.components.tflite_converter.component import TFLiteConverter

__all__ = ["BaselineTrainer", "FashionMnistExampleGen", "LatestPushedModel", "LeafBlessing", "LeafEvaluation", "LeafEvaluator", "LeafPusher", "NPUCompiler",
           "NPUModel", "OptimizationReport", "PreservingQAT", "Pruner", "Reporter", "SparseClusterer",
           "TFLiteConverter", "TFLiteModel"]
