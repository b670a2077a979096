

SECTION = "thin"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('keep_ratio', 'target_cycles', 'npu_target', 'score', 'min_keep', 'exclude_layers', 'strict', 'distill',
              'distill_temperature')
