"""`python -m fishermask_ext`: the `fishermask` command."""
import sys

from .al.cli import main

sys.exit(main())
