"""SparseClusterer executor: decode, call core.stages.cluster, record metrics."""
from collabopt.components import common
from collabopt.core import stages


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "clustered_model")
        metrics = stages.cluster(
            common.single_uri(input_dict, "model"), common.data_spec(input_dict, exec_properties), out.uri,
            number_of_clusters=int(exec_properties["number_of_clusters"]),
            centroid_init=exec_properties["centroid_init"],
            preserve_sparsity=bool(exec_properties["preserve_sparsity"]),
            per_channel=bool(exec_properties["per_channel"]), fit=common.fit_spec(exec_properties))
        common.record(out, metrics)
