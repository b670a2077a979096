

SECTION = "qat"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('scheme', 'shared_centroids', 'exclude_layers', 'strict')
