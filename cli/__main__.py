"""`python -m collabopt.cli ...`: the `collabopt` command."""
import sys

from collabopt.cli import main

sys.exit(main())
