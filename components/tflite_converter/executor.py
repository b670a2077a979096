"""TFLiteConverter executor: decode (and check again), call core.stages.to_tflite, record metrics."""
from collabopt.components import common, keys
from collabopt.components.tflite_converter import PARAMETERS, SECTION
from collabopt.core import stages


class Executor(common.PathStage, common.StageExecutor):
    def stage(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.TFLITE_MODEL_KEY)
        stats = stages.to_tflite(
            common.single_uri(input_dict, keys.MODEL_KEY), common.data_spec(input_dict, exec_properties), out.uri,
            **common.decode(SECTION, exec_properties, PARAMETERS),
            training=common.training_spec(exec_properties))
        failures = stats["preservation_failures"]
        common.record(out, {k: v for k, v in stats.items() if k not in ("layers", "promises")})
        common.record(out, {"preservation_ok": not failures, "preservation_failures": "; ".join(failures)})
