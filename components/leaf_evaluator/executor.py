"""LeafEvaluator executor: decode (and check the requirements again), call core.leaves.evaluate_leaf
with this executor's Beam pipeline (the TFX pipeline's beam_pipeline_args), record metrics and the
blessing."""
import json

from tfx.dsl.components.base import base_beam_executor

from collabopt import schemas
from collabopt.components import common, keys
from collabopt.core import leaves


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


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        common.setup_logging()
        evaluation = common.output(output_dict, keys.EVALUATION_KEY)
        blessing = common.output(output_dict, keys.BLESSING_KEY)
        requirements = decode_requirements(exec_properties["requirements"])
        training = common.training_spec(exec_properties)
        schemas.check({"requirements": requirements, "training": {"eval_metric": training.eval_metric}})
        leaf = leaves.evaluate_leaf(
            exec_properties[keys.PATH], common.single_uri(input_dict, keys.TFLITE_MODEL_KEY),
            common.optional_uri(input_dict, keys.MODEL_KEY), common.data_spec(input_dict, exec_properties),
            evaluation.uri, npu_dir=common.optional_uri(input_dict, keys.NPU_MODEL_KEY), requirements=requirements,
            baseline_dir=common.optional_uri(input_dict, keys.BASELINE_KEY), make_pipeline=self._make_beam_pipeline,
            push_destination=common.decode("push", exec_properties, ("destination",))["destination"],
            training=training)
        common.record(evaluation, {k: v for k, v in leaf.items() if k not in ("npu", keys.REASONS)})
        for target, est in leaf["npu"].items():
            common.record(evaluation, est, prefix=f"{target}.")
        # reasons as a JSON list: a preservation reason holds several layers itself
        reasons = json.dumps(leaf[keys.REASONS])
        common.record(evaluation, {keys.NPU_TARGETS: ",".join(leaf["npu"]), keys.REASONS: reasons,
                                   "preservation_failures": "; ".join(leaf["preservation_failures"]),
                                   keys.EXCLUDED_LAYERS: json.dumps(leaf[keys.EXCLUDED_LAYERS], sort_keys=True),
                                   keys.BLESSED: leaf["blessed"]})
        common.record(blessing, {keys.BLESSED: leaf["blessed"], keys.PATH: leaf["path"], keys.REASONS: reasons})
