"""`python -m fishermask_ext`: the `fishermask` command."""
import sys

from .cli import main

sys.exit(main())
