"""Kubeflow Pipelines, one module per concern: `compiler` turns a TFX pipeline into a KFP v2 package
(pipeline spec 2.1.0, the only schema the open source KFP 2.x backend resolves); `client` submits or
schedules a package through kfp.Client, failing before any request on every mistake visible locally;
`emulator` runs a compiled package without a cluster, task by task, through the same container
entrypoint KFP uses (with `conditions` evaluating trigger conditions and `emulator_mlmd` recording
the lineage). Importing this package imports none of them; KfpError, shared by all, lives here."""


class KfpError(Exception):
    """A problem compiling, submitting, scheduling or locally running a KFP package, in plain words."""
