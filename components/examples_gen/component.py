"""FashionMnistExampleGen: Debian's Fashion-MNIST IDX files -> a standard Examples artifact
(Split-train / Split-eval, gzipped tf.Example TFRecords), as TFX ExampleGen lays it out."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from collabopt.components import common, keys
from collabopt.components.examples_gen import executor
from collabopt.core.data.examples_io import FASHION_MNIST_DIR


class FashionMnistExampleGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {**common.parameters("examples", ("data_dir", "seed")),
                  **common.parameters("data", ("train_limit", "eval_limit"))}
    INPUTS = {}
    OUTPUTS = {keys.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class FashionMnistExampleGen(base_component.BaseComponent):
    """Outputs `examples` with features 'image' (784 uint8 pixels as int64) and 'label'.

    Args:
      data_dir: the folder of the four IDX .gz files (Debian's dataset-fashion-mnist by default).
      train_limit, eval_limit: class-balanced subsets (0: the whole split).
      seed: which subset.
    """
    SPEC_CLASS = FashionMnistExampleGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, data_dir=FASHION_MNIST_DIR, train_limit=0, eval_limit=0, seed=0):
        super().__init__(spec=FashionMnistExampleGenSpec(
            examples=types.Channel(type=standard_artifacts.Examples),
            **common.encode("examples", data_dir=data_dir, seed=seed),
            **common.encode("data", train_limit=train_limit, eval_limit=eval_limit)))
