

SECTION = "npu"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('targets', 'system_config', 'memory_mode')
