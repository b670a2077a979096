

SECTION = "baseline"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('width', 'blocks', 'num_classes')
