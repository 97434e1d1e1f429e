"""``python -m engine.cluster mesos run|status ...`` (the same as ``tickpath mesos ...``)."""

import sys

from engine.cluster.cli import main

sys.exit(main())
