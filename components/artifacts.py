"""collabopt's own artifact types. KFP resolves them as `collabopt.<ClassName>` at run time."""
from tfx.types import artifact


class TFLiteModel(artifact.Artifact):
    """A fully INT8 .tflite (`model.tflite`) with its analysis (`stats.json`) under the uri."""
    TYPE_NAME = "collabopt.TFLiteModel"


class NPUModel(artifact.Artifact):
    """Vela output per accelerator target (`<target>/<stem>_vela.tflite`, summary CSV, `stats.json`)."""
    TYPE_NAME = "collabopt.NPUModel"
