"""``python -m tools.compose_check`` (what ``make compose-check`` runs), at a lower CPU priority."""

import contextlib
import os
import sys

from tools.compose_check.main import main

with contextlib.suppress(OSError):
    os.nice(10)  # the machine's cores are shared; every child (pip, debootstrap, compose) inherits it
sys.exit(main())
