"""Scheduler settings of the Mesos tests (imported by name: ``tests.cluster.scheduler``).

They lived in conftest.py and were imported as ``from conftest import ...``, which
picks whichever folder's conftest.py was imported first under that name: it broke
whenever another folder's conftest came first (``pytest tests/feed tests/cluster``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tickpath.engine.cluster.spec import Constraint, ReplicaResources, SchedulerConfig

HERE = Path(__file__).resolve().parent

# The stand-in replica keeps `tickpath serve`'s shape; it binds loopback only.
STANDIN_COMMAND = (
    f"exec {sys.executable} {HERE / 'standin_replica.py'} --ingest tcp://127.0.0.1:{{ingest_port}} "
    "--publish tcp://127.0.0.1:{publish_port} --symbols-shard {shard}/{shards}"
)


def fast_config(**overrides) -> SchedulerConfig:
    """A scheduler config with test-sized timers and the stand-in replica command."""
    values = dict(
        replicas=2,
        command=STANDIN_COMMAND,
        resources=ReplicaResources(cpus=1.0, mem=256.0),
        constraints=(Constraint(attribute="hostname", value="UNIQUE"),),
        refuse_seconds=0.3,
        refuse_seconds_idle=30.0,
        backoff_initial=0.5,
        backoff_factor=2.0,
        backoff_max=8.0,
        backoff_reset_after=30.0,
        kill_grace_period=1.0,
        kill_retry_after=1.0,
        launch_timeout=5.0,
        reconcile_retry=1.0,
        reconcile_settle=0.5,
        heartbeat_timeout=3.0,
    )
    values.update(overrides)
    return SchedulerConfig(**values)
