"""``python -m tickpath``: the ``tickpath`` command."""

import sys

from tickpath.engine.cli import main

sys.exit(main())
