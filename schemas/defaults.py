"""Every default of the config, in one table: a config is merged over it (pipelines/config.py), and
the component constructors and core.stages take their keyword defaults from it. The schema
(tree_config.schema.json) says what a value may be; this says what it is when a config does not say.
tests/test_config.py checks that the two name the same keys."""
import copy

FASHION_MNIST_SHAPE = [28, 28, 1]
INT_SCALE = 1 / 255  # multiplies integer-valued features: uint8 pixels to [0, 1] (data.scale auto, core/data/scale.py)

DEFAULTS = {
    "name": "collabopt-tree",
    "paths": "all",
    "baseline": {"model_uri": None, "pushed_models": None, "resolve": None, "width": 64, "blocks": 4,
                 "num_classes": 10, "epochs": 3, "batch_size": 64, "learning_rate": 1e-3, "seed": 0},
    "examples": {"uri": None, "resolve": None, "data_dir": None, "seed": 0},  # data_dir None: Debian's package
    "data": {"feature_key": "image", "label_key": "label", "feature_shape": FASHION_MNIST_SHAPE,
             "train_split": "train", "eval_split": "eval", "train_limit": 0, "eval_limit": 0,  # 0: whole split
             "scale": "auto"},  # INT_SCALE unless the model rescales its own input
    "training": {"target": "label", "module_file": None, "loss": "auto", "metrics": None, "eval_metric": "accuracy",
                 "top_k": 5},
    "prune": {"target_sparsity": 0.5, "schedule": "polynomial", "frequency": 100, "m_by_n": None,
              "layer_sparsity": None, "exclude_layers": [], "strict": False,
              "epochs": 2, "batch_size": 64, "learning_rate": 1e-4, "seed": 0},
    "thin": {"keep_ratio": 0.5, "target_cycles": None, "npu_target": "ethos-u55-128", "score": "l1", "min_keep": 0.25,
             "exclude_layers": [], "strict": False, "distill": 0.0, "distill_temperature": 1.0,  # 0: labels only
             "epochs": 2, "batch_size": 64, "learning_rate": 5e-4, "seed": 0},
    "cluster": {"number_of_clusters": 8, "centroid_init": "kmeans++", "per_channel": False, "layer_clusters": None,
                "exclude_layers": [], "strict": False, "epochs": 1, "batch_size": 64, "learning_rate": 1e-4,
                "seed": 0},
    "qat": {"scheme": "auto", "shared_centroids": True, "exclude_layers": [], "strict": False,
            "epochs": 1, "batch_size": 64, "learning_rate": 1e-5, "seed": 0},
    "convert": {"representative_samples": 200},
    "requirements": {"max_int8_accuracy_drop_pp": None, "max_metric_drop": None, "max_gzip_bytes": None,
                     "max_npu_inference_time_s": None, "npu_target": None, "max_arena_bytes": None,
                     "max_tflm_lsb": None, "max_sram_bytes": None},
    "tflm": {"check_examples": 64},  # TFLM's reference kernels are slow (~150 examples/s on a DS-CNN)
    "npu": {"targets": ["ethos-u55-128"], "system_config": "", "memory_mode": ""},  # "": Vela's default
    "push": {"destination": None},
    "report": {"title": "collabopt optimization report"},
    "beam_pipeline_args": ["--direct_running_mode=in_memory"],
    "kubeflow": {"resources": {}, "service_account": None, "enable_caching": False},  # compile only
    "search": {"paths": None, "sparsities": [0.5, 0.75], "clusters": [16, 8], "thin_keep_ratios": None,
               "per_layer": True,
               "schedule_budgets": [1.0, 2.0], "sensitivity_sample": 500, "npu_target": "ethos-u55-128",
               "requirements": {}, "strategy": "halving", "epochs": {"min": 1, "max": 2, "eta": 2},
               "budget": {"max_epochs": None, "max_wall_time_s": None}},  # collabopt search only
}
FIT_KEYS = ("epochs", "batch_size", "learning_rate", "seed")  # a fine-tuning section's training keys


def section(name):
    """A copy of the defaults of one section."""
    return copy.deepcopy(DEFAULTS[name])
