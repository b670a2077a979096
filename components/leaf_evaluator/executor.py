"""LeafEvaluator executor: decode (and check the requirements again), call core.leaves.evaluate_leaf
with this executor's Beam pipeline (the TFX pipeline's beam_pipeline_args), record metrics and the
blessing."""
import copy
import json
import os

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from collabopt import schemas
from collabopt.components import common, keys
from collabopt.core import artifact_files
from collabopt.core.evaluation import beam_eval, leaf_evaluation


def encode_requirements(requirements, training=None):
    if common.placeholder(requirements):  # JSON text known at run time: decode_requirements checks it
        return requirements
    req = {k: v for k, v in dict(requirements or {}).items() if v is not None}
    schemas.check({"requirements": req, "training": {k: v for k, v in (training or {}).items() if k == "eval_metric"}})
    return json.dumps(req, sort_keys=True)


def decode_requirements(text):
    try:
        requirements = json.loads(text or "{}")
    except ValueError as e:
        raise schemas.ConfigError(f"requirements: {text!r} is not JSON ({e})") from None
    return schemas.check({"requirements": requirements})["requirements"]


def without_reference(leaf, evaluation_dir, error, requirements):
    """The leaf of a path whose reference (ptq) leaf failed: no metric drop, and not blessed if a
    maximum drop is required. Rewrites its leaf.json."""
    leaf.update(baseline_int8_metric=None, metric_drop=None)
    if "baseline_int8_accuracy" in leaf:
        leaf.update(baseline_int8_accuracy=None, int8_accuracy_drop_pp=None)
    if any(requirements.get(k) is not None for k in ("max_int8_accuracy_drop_pp", "max_metric_drop")):
        leaf["reasons"].append(f"no INT8 {leaf['eval_metric']} drop to judge: the reference leaf failed ({error})")
        leaf["blessed"] = False
    artifact_files.write_json(os.path.join(evaluation_dir, artifact_files.LEAF_FILE), leaf)
    return leaf


class Executor(common.PathStage, base_beam_executor.BaseBeamExecutor):
    REFERENCE_INPUTS = (keys.BASELINE_KEY,)  # a failed reference leaves this leaf unjudged on the drop, not failed

    def __init__(self, context=None):
        # TFX packages itself for remote Beam workers on every execution (a 45 MB sdist left in a temp
        # dir); an in-process runner's workers need no package, so the base class sees no args.
        args = list(getattr(context, "beam_pipeline_args", None) or [])
        local = bool(args) and beam_eval.runs_in_process(args)
        if local:
            context = copy.copy(context)
            context.beam_pipeline_args = []
        super().__init__(context)
        if local:
            self._beam_pipeline_args = args

    def stage(self, input_dict, output_dict, exec_properties):
        evaluation = common.output(output_dict, keys.EVALUATION_KEY)
        blessing = common.output(output_dict, keys.BLESSING_KEY)
        requirements = decode_requirements(exec_properties["requirements"])
        training = common.training_spec(exec_properties)
        schemas.check({"requirements": requirements, "training": {"eval_metric": training.eval_metric}})
        reference_failed = common.failure(input_dict, [keys.BASELINE_KEY])
        leaf = leaf_evaluation.evaluate_leaf(
            exec_properties[keys.PATH], common.single_uri(input_dict, keys.TFLITE_MODEL_KEY),
            common.optional_uri(input_dict, keys.MODEL_KEY), common.data_spec(input_dict, exec_properties),
            evaluation.uri, npu_dir=common.optional_uri(input_dict, keys.NPU_MODEL_KEY), requirements=requirements,
            baseline_dir=None if reference_failed else common.optional_uri(input_dict, keys.BASELINE_KEY),
            make_pipeline=self._make_beam_pipeline,
            push_destination=common.decode("push", exec_properties, ("destination",))["destination"],
            training=training,
            tflm_examples=common.decode("tflm", exec_properties, ("check_examples",))["check_examples"])
        if reference_failed:
            leaf = without_reference(leaf, evaluation.uri, reference_failed, requirements)
        common.record(evaluation, {k: v for k, v in leaf.items() if k not in ("npu", keys.REASONS)})
        for target, est in leaf["npu"].items():
            common.record(evaluation, est, prefix=f"{target}.")
            common.record(evaluation, {k: json.dumps(est.get(k)) for k in (keys.PER_LAYER, keys.CPU_OPERATORS)},
                          prefix=f"{target}.")
        # reasons as a JSON list: a preservation reason holds several layers itself
        reasons = json.dumps(leaf[keys.REASONS])
        common.record(evaluation, {keys.NPU_TARGETS: ",".join(leaf["npu"]), keys.REASONS: reasons,
                                   "preservation_failures": "; ".join(leaf["preservation_failures"]),
                                   keys.EXCLUDED_LAYERS: json.dumps(leaf[keys.EXCLUDED_LAYERS], sort_keys=True),
                                   keys.BLESSED: leaf["blessed"]})
        common.record(blessing, {keys.BLESSED: leaf["blessed"], keys.PATH: leaf["path"], keys.REASONS: reasons})

    def failed(self, input_dict, output_dict, exec_properties, error):
        """A failed leaf (leaf.json says why) and a blessing of 0: the report lists it, nothing pushes it."""
        super().failed(input_dict, output_dict, exec_properties, error)
        path = exec_properties[keys.PATH]
        artifact_files.write_failed_leaf(common.single_uri(output_dict, keys.EVALUATION_KEY), path, error)
        for key in (keys.EVALUATION_KEY, keys.BLESSING_KEY):
            common.record(artifact_utils.get_single_instance(output_dict[key]),
                          {keys.PATH: path, keys.BLESSED: 0, keys.REASONS: json.dumps([error])})
