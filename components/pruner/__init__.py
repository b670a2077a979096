

SECTION = "prune"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('target_sparsity', 'schedule', 'frequency', 'm_by_n', 'exclude_layers', 'strict', 'layer_sparsity')
