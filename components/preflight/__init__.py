SECTION = "data"  # no parameters of its own: the data section says how the calibration examples are read
PARAMETERS = ()
