"""``python -m tools.mutate`` (what ``make mutate`` runs), at the lowest CPU priority."""

import contextlib
import os
import sys

from tools.mutate.main import main

with contextlib.suppress(OSError):
    os.nice(19)  # the machine's cores are shared with training; mutmut and pytest inherit it
sys.exit(main())
