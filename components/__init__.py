"""The collabopt TFX components (one folder each: component spec, executor, README, tests).

Loaded on first use, so `collabopt.components.keys` (plain constants) imports without TFX."""
import importlib

_WHERE = {
    "LeafBlessing": "artifacts", "LeafEvaluation": "artifacts", "NPUModel": "artifacts",
    "OptimizationReport": "artifacts", "TFLiteModel": "artifacts",
    "BaselineTrainer": "baseline_trainer.component", "ChannelPruner": "channel_pruner.component", "FashionMnistExampleGen": "examples_gen.component",
    "LatestPushedModel": "latest_pushed_model.component", "LeafEvaluator": "leaf_evaluator.component",
    "LeafPusher": "leaf_pusher.component", "NPUCompiler": "npu_compiler.component",
    "Preflight": "preflight.component", "PreservingQAT": "preserving_qat.component", "Pruner": "pruner.component", "Reporter": "reporter.component",
    "SparseClusterer": "sparse_clusterer.component", "TFLiteConverter": "tflite_converter.component",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
