"""Channel keys and MLMD property names of collabopt's components, as constants (as TFX's
standard_component_specs has them): specs, executors, pipelines, the MLMD reader and tests use these."""
# Inputs and outputs
MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
PRUNED_MODEL_KEY = "pruned_model"
THINNED_MODEL_KEY = "thinned_model"
CLUSTERED_MODEL_KEY = "clustered_model"
QAT_MODEL_KEY = "qat_model"
TFLITE_MODEL_KEY = "tflite_model"
NPU_MODEL_KEY = "npu_model"
BASELINE_KEY = "baseline"          # LeafEvaluator: the reference (ptq) leaf's evaluation
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
PUSHED_MODEL_KEY = "pushed_model"
REPORT_KEY = "report"
# The output of every model stage, by component
MODEL_OUTPUT = {"Pruner": PRUNED_MODEL_KEY, "ChannelPruner": THINNED_MODEL_KEY, "SparseClusterer": CLUSTERED_MODEL_KEY, "PreservingQAT": QAT_MODEL_KEY,
                "BaselineTrainer": MODEL_KEY, "LatestPushedModel": MODEL_KEY}

# Custom properties other code reads back
BLESSED = "blessed"                # LeafBlessing / LeafEvaluation: 1 or 0 (as TFX's ModelBlessing)
REASONS = "reasons"                # JSON list: why a leaf is not blessed
PUSHED = "pushed"                  # PushedModel: 1 or 0 (as TFX's Pusher)
PATH = "path"                      # the leaf's deployment-tree path
NPU_TARGETS = "npu_targets"        # LeafEvaluation: comma-separated Vela targets it has numbers for
# NPUModel and LeafEvaluation, per target (`<target>.per_layer`): JSON, Vela's per-layer view and the
# operators it left on the CPU with its reasons (core.npu.per_layer)
from collabopt.core.npu.per_layer import CPU_OPERATORS, PER_LAYER  # noqa: E402,F401
from collabopt.core.artifact_files import EXCLUDED_LAYERS  # noqa: E402,F401  JSON {technique: {layer: why}}
# A path whose stage failed: its nodes' outputs carry these instead of a result (as TFX's Pusher marks
# "not pushed"), so the other paths, the report and the blessing still run; set by common.PathStage.
# FAILED: 1 on every output of a failed path's nodes; ERROR: "<node>: <one-line reason>" of the first.
from collabopt.core.artifact_files import ERROR, FAILED  # noqa: E402,F401
