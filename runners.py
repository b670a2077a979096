"""Run a pipeline on the embedded default (LocalDagRunner + SQLite MLMD) or TFX's Beam runner."""
import os

from collabopt.core import tfenv  # noqa: F401  (TF_USE_LEGACY_KERAS before TFX imports TF)

RUNNERS = ("local", "beam")


class _DropNoise:
    """Warnings that say nothing to a user, printed dozens of times per run: TFX 1.21 ignoring the
    property predicates its own IR carries for every input; Keras noting that cluster-preserving QAT
    does not train the original kernels (by design: it trains the centroids)."""
    NOISE = ("property_predicate is not supported", "Gradients do not exist for variables")

    def filter(self, record):
        return not any(n in record.getMessage() for n in self.NOISE)


_NOISE = _DropNoise()


def run(pipeline, runner="local"):
    import logging
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).addFilter(_NOISE)  # the same object: added once per process
    if runner == "local":
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner
        return LocalDagRunner().run(pipeline)
    if runner == "beam":
        from apache_beam.options.pipeline_options import StandardOptions
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        # TFX orchestrates with beam.Pipeline() and no options: Beam's default DirectRunner would first
        # try to download the Prism runner from the internet. Its fallback, picked directly:
        default, StandardOptions.DEFAULT_RUNNER = StandardOptions.DEFAULT_RUNNER, "FnApiRunner"
        try:
            return BeamDagRunner().run(pipeline)
        finally:
            StandardOptions.DEFAULT_RUNNER = default
    raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")


def paths(root):
    """(pipeline_root, metadata_path) inside one local folder."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    return os.path.join(root, "pipeline_root"), os.path.join(root, "metadata.sqlite")
