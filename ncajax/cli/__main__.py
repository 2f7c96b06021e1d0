"""`python -m ncajax.cli ...` is the `ncajax` command (for environments without the console scripts)."""

import sys

from . import main

sys.exit(main())
