"""Mesos integration: keep engine replicas (one per symbol shard) running on a cluster.

* :mod:`tickpath.engine.cluster.spec`: what to run (resources, constraints, timings);
* :mod:`tickpath.engine.cluster.replicas`: the scheduling state machine (offers in, decisions out);
* :mod:`tickpath.engine.cluster.framework`: the pymesos glue (driver, threads, watchdog);
* :mod:`engine.cluster.store`, :mod:`engine.cluster.discovery`: persisted framework
  state, and where each shard's replica listens (:func:`follow_endpoints`);
* :mod:`tickpath.engine.cluster.cli`: ``tickpath mesos run|status``;
* :mod:`tickpath.engine.cluster.state_transfer`: a relaunched replica loads its twin's state
  (``serve --state-endpoint`` / ``--state-from``);
* :mod:`tickpath.engine.cluster.install`: installs pymesos on Python 3.11+.

Nothing here imports pymesos at import time, nor the kernels.
"""
