"""collabopt's own artifact types. KFP resolves them as `collabopt.<ClassName>` at run time."""
from tfx.types import artifact


class TFLiteModel(artifact.Artifact):
    """A fully INT8 .tflite (`model.tflite`) with its analysis (`stats.json`) under the uri."""
    TYPE_NAME = "collabopt.TFLiteModel"


class NPUModel(artifact.Artifact):
    """Vela output per accelerator target (`<target>/<stem>_vela.tflite`, summary CSV, `stats.json`)."""
    TYPE_NAME = "collabopt.NPUModel"


class LeafEvaluation(artifact.Artifact):
    """One deployment-tree leaf evaluated the same way as every other (`leaf.json`, `kernels.npz`,
    Vela estimates under `npu/<target>/`); its numbers are MLMD properties."""
    TYPE_NAME = "collabopt.LeafEvaluation"


class OptimizationReport(artifact.Artifact):
    """A run's self-contained HTML report (`report.html`) and its leaf table (`leaves.json`)."""
    TYPE_NAME = "collabopt.OptimizationReport"


class LeafBlessing(artifact.Artifact):
    """A leaf's verdict: custom property `blessed` = 1/0 (as a TFX ModelBlessing) and `reasons`.

    Not a standard ModelBlessing on purpose: TFX's LatestBlessedModelStrategy (and its KFP query,
    which matches by type across the store) must only see the baseline's blessings, never a leaf's.
    """
    TYPE_NAME = "collabopt.LeafBlessing"
