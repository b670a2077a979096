

SECTION = "cluster"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('number_of_clusters', 'centroid_init', 'per_channel', 'exclude_layers', 'strict', 'layer_clusters')
