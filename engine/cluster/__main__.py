"""``python -m engine.cluster mesos run|status ...`` (the same as ``tickpath mesos ...``)."""

import sys

from tickpath.engine.cluster.cli import main

sys.exit(main())
