"""Run a pipeline on the embedded default (LocalDagRunner + SQLite MLMD) or TFX's Beam runner."""
import os

from collabopt.core import tfenv  # noqa: F401  (TF_USE_LEGACY_KERAS before TFX imports TF)

RUNNERS = ("local", "beam")


class _DropNoise:
    """TFX 1.21 warns once per input resolution that it ignores property predicates (which the
    compiled IR carries for every input); a full-tree run prints it ~90 times."""

    def filter(self, record):
        return "property_predicate is not supported" not in record.getMessage()


def run(pipeline, runner="local"):
    import logging
    logging.getLogger("absl").addFilter(_DropNoise())
    if runner == "local":
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner
        return LocalDagRunner().run(pipeline)
    if runner == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        return BeamDagRunner().run(pipeline)
    raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")


def paths(root):
    """(pipeline_root, metadata_path) inside one local folder."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    return os.path.join(root, "pipeline_root"), os.path.join(root, "metadata.sqlite")
