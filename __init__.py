"""collabopt: TFX components for collaborative optimization of Keras models for edge NPUs."""
__version__ = "0.1.0"

_ARTIFACTS = ("TFLiteModel", "NPUModel", "LeafEvaluation", "LeafBlessing", "OptimizationReport")


def __getattr__(name):
    # Lazy, so `import collabopt` (the CLI) does not import TFX/TensorFlow; KFP's executor imports
    # the artifact classes as collabopt.TFLiteModel / collabopt.NPUModel.
    if name in _ARTIFACTS:
        from collabopt.components import artifacts
        return getattr(artifacts, name)
    raise AttributeError(f"module 'collabopt' has no attribute {name!r}")
