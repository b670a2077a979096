"""The test suite: `pytest` from the repository root, or `pytest --pyargs collabopt.tests` against an installed wheel."""
