"""Measurement scripts (not tests): `python benchmarks/<script>.py` or `python -m collabopt.benchmarks.<script>`; see README.md here."""
