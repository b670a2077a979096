"""Invalid configs fail before anything runs, each mistake with the path of the field and why."""
import os

import pytest

from collabopt import cli, schemas
from collabopt.pipelines import config as tree_config

OK = {"paths": "all"}
MISTAKES = [
    ({"paths": "all", "prunning": {}}, "<top>: Additional properties are not allowed ('prunning' was unexpected)"),
    ({}, "<top>: 'paths' is a required property"),
    ({"paths": ["prune_qat"]}, "paths.0: 'prune_qat' is not one of ['ptq', 'qat', 'prune_ptq'"),
    ({"paths": []}, "paths: [] should be non-empty"),
    ({"paths": "all", "prune": {"target_sparsity": 1.5}},
     "prune.target_sparsity: 1.5 is greater than or equal to the maximum of 1"),
    ({"paths": "all", "cluster": {"number_of_clusters": 1}}, "cluster.number_of_clusters: 1 is less than the minimum of 2"),
    ({"paths": "all", "qat": {"scheme": "pcqa"}}, "qat.scheme: 'pcqa' is not one of ['auto', 'qat', 'pqat', 'cqat', 'pcqat']"),
    ({"paths": "all", "npu": {"targets": ["ethos-u55-100"]}}, "npu.targets.0: 'ethos-u55-100' is not one of ['ethos-u55-32'"),
    ({"paths": "all", "requirements": {"max_int8_accuracy_drop_pp": -1}},
     "requirements.max_int8_accuracy_drop_pp: -1 is less than the minimum of 0"),
    ({"paths": "all", "baseline": {"epochs": "three"}}, "baseline.epochs: 'three' is not of type 'integer'"),
    ({"paths": "all", "baseline": {"model_uri": "/no/such/model"}}, "baseline.model_uri: '/no/such/model' does not exist"),
    ({"paths": "all", "examples": {"uri": "/no/such/examples"}}, "examples.uri: '/no/such/examples' does not exist"),
    ({"paths": "all", "requirements": {"max_npu_inference_time_s": 0.01, "npu_target": "ethos-u85-256"}},
     "requirements.npu_target: 'ethos-u85-256' is not among npu.targets ['ethos-u55-128']"),
    ({"paths": "all", "requirements": {"npu_target": "ethos-u55-128"}},
     "requirements.npu_target: set, but max_npu_inference_time_s is not"),
    ({"paths": "all", "data": {"feature_shape": [28, 0]}}, "data.feature_shape.1: 0 is less than the minimum of 1"),
    ({"paths": "all", "beam_pipeline_args": ["direct_num_workers=2"]},
     "beam_pipeline_args.0: 'direct_num_workers=2' does not match '^--'"),
    ({"paths": "all", "name": "my pipeline"}, "name: 'my pipeline' does not match"),
    ({"paths": "all", "baseline": {"model_uri": "/tmp", "pushed_models": "/tmp"}},
     "baseline: model_uri and pushed_models are alternatives; set one"),
    ({"paths": "all", "search": {"thin_keep_ratios": [0.5, 1.0]}},
     "search.thin_keep_ratios.1: 1.0 is greater than or equal to the maximum of 1"),
    ({"paths": "all", "search": {"thin_keep_ratios": []}}, "search.thin_keep_ratios: [] should be non-empty"),
    ({"paths": "all", "thin": {"distill": 1.5}}, "thin.distill: 1.5 is greater than the maximum of 1"),
    ({"paths": "all", "thin": {"distill": "0.5"}}, "thin.distill: '0.5' is not of type 'number'"),
    ({"paths": "all", "search": {"paths": ["thin_prune_qat"]}},
     "search.paths.0: 'thin_prune_qat' is not one of ['ptq', 'qat', 'prune_ptq'"),
]


@pytest.mark.parametrize("config,message", MISTAKES, ids=[m[:40] for _, m in MISTAKES])
def test_each_mistake_has_its_own_message(config, message):
    with pytest.raises(schemas.ConfigError) as e:
        tree_config.merge(config)
    assert message in str(e.value)


def test_messages_are_distinct_and_several_mistakes_are_listed_together():
    assert len({m for _, m in MISTAKES}) == len(MISTAKES) >= 8
    with pytest.raises(schemas.ConfigError) as e:
        tree_config.merge({"paths": "all", "prune": {"target_sparsty": 0.5}, "cluster": {"number_of_clusters": 1}})
    assert "prune: Additional properties are not allowed ('target_sparsty' was unexpected)" in str(e.value)
    assert "cluster.number_of_clusters: 1 is less than the minimum of 2" in str(e.value)


def test_schema_targets_are_velas_own():
    from collabopt.core.npu import vela
    schema = schemas.load("tree_config")
    assert schema["properties"]["npu"]["properties"]["targets"]["items"]["enum"] == list(vela.valid_accelerator_configs())


def test_schema_paths_are_the_trees_own():
    from collabopt.core import tree_paths
    paths = schemas.load("tree_config")["properties"]["paths"]["oneOf"][1]["items"]["enum"]
    assert sorted(paths) == sorted(tree_paths.PATHS)  # thin_prune_cluster_pcqat and the other thinned paths too


def test_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: all\nprune: {target_sparsity: 0.5\n")
    with pytest.raises(schemas.ConfigError, match=r"(?s)bad.yaml: not valid YAML: .*line 2, column 8"):
        tree_config.load(bad)
    bad.write_text("- paths\n")
    with pytest.raises(schemas.ConfigError, match="a config is a mapping of sections, got list"):
        tree_config.load(bad)
    with pytest.raises(schemas.ConfigError, match=r"config file '/no/such.yaml' does not exist \(packaged configs: "
                                                   r"all_paths.yaml, demo.yaml\)"):
        tree_config.load("/no/such.yaml")
    for name in ("demo", "all_paths"):  # the packaged configs are valid
        cfg = tree_config.load(name)
        assert cfg["paths"] and cfg["npu"]["targets"]
    assert tree_config.merge({"paths": ["prune_ptq"], "prune": {"target_sparsity": 0.7}})["prune"]["target_sparsity"] == 0.7


def test_cli_run_stops_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: all\ncluster: {number_of_clusters: 1}\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(bad), "--root", str(tmp_path / "run")])
    assert "cluster.number_of_clusters: 1 is less than the minimum of 2" in str(e.value)
    assert str(bad) in str(e.value)
    assert not os.path.exists(tmp_path / "run")  # no pipeline root, no MLMD


def test_a_dict_with_every_section_is_validated_too(tmp_path):
    """create_pipeline used to skip validation for a dict that had every top-level key."""
    from collabopt.pipelines import tree
    cfg = tree_config.merge({"paths": "all"})
    assert set(cfg) == set(tree_config.DEFAULTS)
    cfg["cluster"]["number_of_clusters"] = 1
    with pytest.raises(schemas.ConfigError, match="cluster.number_of_clusters: 1 is less than the minimum of 2"):
        tree.create_pipeline(cfg, str(tmp_path / "root"))


def test_the_defaults_table_names_every_key_of_the_schema_and_nothing_else():
    """One table of defaults (schemas/defaults.py) for the one schema: a key the schema adds without a
    default, or a default the schema does not know, fails here."""
    from collabopt.schemas.defaults import DEFAULTS
    props = schemas.load("tree_config")["properties"]
    assert set(DEFAULTS) == set(props)
    for section, default in DEFAULTS.items():
        if isinstance(default, dict) and "properties" in props[section]:
            assert set(default) == set(props[section]["properties"]), section
    schemas.validate(DEFAULTS)  # and every default is a valid value


BAD_PARAMETERS = [  # (component, section, key, value, message): one row per section a component checks
    ("Pruner", "prune", "target_sparsity", 1.5, "prune.target_sparsity: 1.5 is greater than or equal to the maximum of 1"),
    ("SparseClusterer", "cluster", "number_of_clusters", 1, "cluster.number_of_clusters: 1 is less than the minimum of 2"),
    ("PreservingQAT", "qat", "scheme", "pcqa", "qat.scheme: 'pcqa' is not one of ['auto', 'qat', 'pqat', 'cqat', 'pcqat']"),
    ("TFLiteConverter", "convert", "representative_samples", 0,
     "convert.representative_samples: 0 is less than the minimum of 1"),
    ("NPUCompiler", "npu", "system_config", 5, "npu.system_config: 5 is not of type 'string'"),
    ("BaselineTrainer", "baseline", "width", 0, "baseline.width: 0 is less than the minimum of 1"),
    ("Pruner", "data", "feature_shape", [28, 0], "data.feature_shape.1: 0 is less than the minimum of 1"),
    ("LeafEvaluator", "tflm", "check_examples", 0, "tflm.check_examples: 0 is less than the minimum of 1"),
]


@pytest.mark.parametrize("component,section,key,value,message", BAD_PARAMETERS, ids=[r[0] + "." + r[2] for r in BAD_PARAMETERS])
def test_a_bad_parameter_gets_the_config_schemas_message_at_load_and_at_construction(component, section, key, value,
                                                                                        message):
    """The one rule, written once (the schema), applied when a config is loaded and when a component is
    built; the executors decode with the same check (each component's executor_test.py)."""
    from tfx.types import channel, standard_artifacts

    from collabopt import components
    with pytest.raises(schemas.ConfigError) as loaded:
        tree_config.merge({"paths": "all", section: {key: value}})
    assert message in str(loaded.value)
    inputs = {"examples": channel.Channel(type=standard_artifacts.Examples)}
    inputs.update({"tflite_model": channel.Channel(type=components.TFLiteModel)} if component == "NPUCompiler" else
                  {} if component == "BaselineTrainer" else {"model": channel.Channel(type=standard_artifacts.Model)})
    if component == "NPUCompiler":
        inputs.pop("examples")
    if component == "LeafEvaluator":
        inputs.update(tflite_model=channel.Channel(type=components.TFLiteModel), path="ptq")
    with pytest.raises(schemas.ConfigError) as built:
        getattr(components, component)(**inputs, **{key: value})
    assert str(built.value) == message
