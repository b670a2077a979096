"""LatestPushedModel executor with a hand-built TFX Pusher destination: the newest integer version with
a SavedModel is copied into the Model artifact; where it came from is recorded."""
import os

import pytest

from collabopt.components import LatestPushedModel, keys
from collabopt.components.latest_pushed_model.executor import Executor
from collabopt.core.model import keras_io
from collabopt.schemas import ConfigError
from collabopt.tests.helpers import prop, dense_model, run_executor, save_model_dir


def _latest(tmp_path, source, **overrides):
    return run_executor(Executor(), LatestPushedModel(pushed_models=str(source)), {}, tmp_path,
                        **overrides)[keys.MODEL_KEY]


def test_newest_pushed_version_is_copied(tmp_path):
    pushed = tmp_path / "serving"
    for version, classes in ((9, 9), (10, 10)):  # 10 > 9 as numbers, not as strings
        save_model_dir(pushed / str(version), dense_model(classes=classes))
    (pushed / "11").mkdir()  # a version being written: no saved_model.pb yet
    (pushed / "tmp-12").mkdir()  # not a version
    out = _latest(tmp_path, pushed)
    assert prop(out, "version") == 10
    assert prop(out, "source_uri") == str(pushed / "10")
    assert sorted(os.listdir(os.path.join(out.uri, keras_io.SERVING_DIR))) == sorted(os.listdir(pushed / "10"))
    assert keras_io.load_model(out.uri).output_shape == (None, 10)  # the 10-class model of version 10


def test_no_pushed_model(tmp_path):
    pushed = tmp_path / "serving"
    (pushed / "1").mkdir(parents=True)
    with pytest.raises(keras_io.ModelError) as e:
        _latest(tmp_path, pushed)
    assert str(e.value) == (f"no pushed model in {str(pushed)!r}: expected <version>/saved_model.pb folders "
                            f"with integer versions, as TFX's Pusher writes them")
    with pytest.raises(keras_io.ModelError) as e:
        _latest(tmp_path, tmp_path / "nowhere")
    assert str(e.value) == f"pushed models folder {str(tmp_path / 'nowhere')!r} does not exist"


def test_bad_exec_property(tmp_path):
    with pytest.raises(ConfigError) as e:
        _latest(tmp_path, tmp_path, pushed_models=5)
    assert str(e.value) == "baseline.pushed_models: 5 is not of type 'string', 'null'"


def test_empty_source_reaching_the_executor_is_named(tmp_path):
    """An empty pushed_models ("" is how None travels in a spec) that reaches the executor anyway fails
    with the parameter's name, as at construction, not as a folder named 'None'."""
    with pytest.raises(ValueError) as e:
        _latest(tmp_path, tmp_path, pushed_models="")
    assert str(e.value).startswith("baseline.pushed_models: ")
