"""``python -m reid_core COMMAND [options]``: the command-line app (reid_core/cli/app.py), like ``reid``."""

import sys

from reid_core.cli.app import main

sys.exit(main())
