

SECTION = "convert"  # the config section whose keys these parameters are (checked by its schema)
PARAMETERS = ('representative_samples',)
