"""PreservingQAT executor: decode, call core.stages.preserving_qat, record metrics."""
from collabopt.components import common
from collabopt.core import stages


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "qat_model")
        metrics = stages.preserving_qat(
            common.single_uri(input_dict, "model"), common.data_spec(input_dict, exec_properties), out.uri,
            scheme=exec_properties["scheme"], shared_centroids=bool(exec_properties["shared_centroids"]),
            fit=common.fit_spec(exec_properties))
        common.record(out, {**metrics, "fake_int8_accuracy": metrics["accuracy"]})
