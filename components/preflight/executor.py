"""Preflight executor: a PreflightError fails the execution (not a path: no path could convert)."""
from collabopt.components import common, keys
from collabopt.core.tflite import preflight


class Executor(common.StageExecutor):
    @common.announced
    def Do(self, input_dict, output_dict, exec_properties):
        preflight.check_baseline(common.single_uri(input_dict, keys.MODEL_KEY),
                                 common.data_spec(input_dict, exec_properties))
