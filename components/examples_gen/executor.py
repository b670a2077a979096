"""FashionMnistExampleGen executor: IDX files -> Split-train/Split-eval TFRecords."""
import json

from tfx.types import artifact_utils

from collabopt.components import common
from collabopt.core import data


class Executor(common.StageExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, "examples")
        splits = data.load_fashion_mnist(
            exec_properties["data_dir"], train_limit=int(exec_properties["train_limit"]) or None,
            eval_limit=int(exec_properties["eval_limit"]) or None, seed=int(exec_properties["seed"]))
        names = data.write_examples(out.uri, splits)
        out.split_names = artifact_utils.encode_split_names(list(names))
        common.record(out, {f"{k}_count": int(len(v[1])) for k, v in splits.items()})
        out.set_string_custom_property("features", json.dumps({"image": [28, 28, 1], "label": []}))
