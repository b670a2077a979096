"""FashionMnistExampleGen: Debian's Fashion-MNIST IDX files -> a standard Examples artifact
(Split-train / Split-eval, gzipped tf.Example TFRecords), as TFX ExampleGen lays it out."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from collabopt.components.examples_gen import executor
from collabopt.core.data import FASHION_MNIST_DIR


class FashionMnistExampleGenSpec(component_spec.ComponentSpec):
    PARAMETERS = {"data_dir": ExecutionParameter(type=str), "train_limit": ExecutionParameter(type=int),
                  "eval_limit": ExecutionParameter(type=int), "seed": ExecutionParameter(type=int)}
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class FashionMnistExampleGen(base_component.BaseComponent):
    """Outputs `examples` with features 'image' (784 uint8 pixels as int64) and 'label'."""
    SPEC_CLASS = FashionMnistExampleGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, data_dir=FASHION_MNIST_DIR, train_limit=0, eval_limit=0, seed=0):
        for name, v in (("train_limit", train_limit), ("eval_limit", eval_limit)):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 = all), got {v!r}")
        super().__init__(spec=FashionMnistExampleGenSpec(
            data_dir=data_dir, train_limit=train_limit, eval_limit=eval_limit, seed=seed,
            examples=types.Channel(type=standard_artifacts.Examples)))
