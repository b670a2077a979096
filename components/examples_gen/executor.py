"""FashionMnistExampleGen executor: IDX files -> Split-train/Split-eval TFRecords."""
import json

from tfx.types import artifact_utils

from collabopt.components import common, keys
from collabopt.core.data import examples_io


class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        out = common.output(output_dict, keys.EXAMPLES_KEY)
        ex = common.decode("examples", exec_properties, ("data_dir", "seed"))
        limits = common.decode("data", exec_properties, ("train_limit", "eval_limit"))
        splits = examples_io.load_fashion_mnist(ex["data_dir"], train_limit=limits["train_limit"] or None,
                                         eval_limit=limits["eval_limit"] or None, seed=ex["seed"])
        names = examples_io.write_examples(out.uri, splits)
        out.split_names = artifact_utils.encode_split_names(list(names))
        common.record(out, {f"{k}_count": int(len(v[1])) for k, v in splits.items()})
        out.set_string_custom_property("features", json.dumps({"image": list(examples_io.FASHION_MNIST_SHAPE), "label": []}))
