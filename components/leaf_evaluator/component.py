"""LeafEvaluator: evaluates one deployment-tree leaf (Beam), gates it on the user's requirements and
on preservation, and blesses it (collabopt.LeafBlessing) or says why not."""
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components import artifacts, common
from collabopt.components.leaf_evaluator import executor
from collabopt.core import vela

REQUIREMENT_KEYS = ("max_int8_accuracy_drop_pp", "max_gzip_bytes", "max_npu_inference_time_s", "npu_target")


class LeafEvaluatorSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "path": ExecutionParameter(type=str),          # the leaf's deployment-tree path, e.g. prune_cluster_pcqat
        "requirements": ExecutionParameter(type=str),  # JSON object, see REQUIREMENT_KEYS
        "npu_targets": ExecutionParameter(type=str),   # JSON list of Vela accelerator configs
        "system_config": ExecutionParameter(type=str),
        "push_destination": ExecutionParameter(type=str),  # compare with the leaf deployed there ("" = no)
        **common.DATA_PARAMETERS,
    }
    INPUTS = {
        "tflite_model": ChannelParameter(type=artifacts.TFLiteModel),
        "model": ChannelParameter(type=standard_artifacts.Model, optional=True),  # what was converted
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "baseline": ChannelParameter(type=artifacts.LeafEvaluation, optional=True),  # the PTQ leaf
    }
    OUTPUTS = {"evaluation": ChannelParameter(type=artifacts.LeafEvaluation),
               "blessing": ChannelParameter(type=artifacts.LeafBlessing)}


def check_requirements(requirements, npu_targets):
    req = dict(requirements or {})
    unknown = sorted(set(req) - set(REQUIREMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown requirement(s) {unknown}; known: {', '.join(REQUIREMENT_KEYS)}")
    for key in ("max_int8_accuracy_drop_pp", "max_gzip_bytes", "max_npu_inference_time_s"):
        v = req.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"requirement {key} must be a number >= 0 or null, got {v!r}")
    if req.get("max_npu_inference_time_s") is not None:
        target = req.get("npu_target") or (npu_targets[0] if npu_targets else None)
        if target not in npu_targets:
            raise ValueError(f"max_npu_inference_time_s needs its npu_target ({target!r}) among the NPU "
                             f"targets {list(npu_targets)}")
    return req


class LeafEvaluator(base_component.BaseComponent):
    """Outputs `evaluation` (collabopt.LeafEvaluation: fp32/int8 accuracy, sizes, sparsity, distinct
    values, per-target Vela estimates `<target>.<key>`, the gate's reasons) and `blessing` (collabopt.LeafBlessing
    with custom property blessed = 1/0, as TFX's Evaluator writes it, so TFX conditionals can gate on it)."""
    SPEC_CLASS = LeafEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, tflite_model: types.BaseChannel, examples: types.BaseChannel, path: str,
                 model: types.BaseChannel = None, baseline: types.BaseChannel = None, requirements=None,
                 npu_targets=(), system_config="", push_destination="", **data_kwargs):
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must name the leaf's deployment-tree path, got {path!r}")
        targets = [npu_targets] if isinstance(npu_targets, str) else list(npu_targets)
        bad = [t for t in targets if t not in vela.valid_accelerator_configs()]
        if bad:
            raise ValueError(f"unknown NPU target(s) {bad}; valid: {', '.join(vela.valid_accelerator_configs())}")
        req = check_requirements(requirements, targets)
        super().__init__(spec=LeafEvaluatorSpec(
            tflite_model=tflite_model, model=model, examples=examples, baseline=baseline, path=path,
            requirements=json.dumps(req, sort_keys=True), npu_targets=json.dumps(targets),
            system_config=system_config, push_destination=push_destination or "",
            evaluation=types.Channel(type=artifacts.LeafEvaluation),
            blessing=types.Channel(type=artifacts.LeafBlessing), **common.data_params(**data_kwargs)))
