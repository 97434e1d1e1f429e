"""Fixtures for the Mesos tests: a stand-in master with agents, and scheduler runners."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tickpath.engine.cluster.spec import Constraint, ReplicaResources, SchedulerConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from standin_master import AgentSpec, StandinMaster  # noqa: E402

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


@pytest.fixture
def standin(tmp_path):
    """Factory: ``standin(agent_specs, **kwargs)`` -> a started StandinMaster (stopped after)."""
    masters = []

    def make(agents=None, **kwargs):
        agents = agents or [AgentSpec(f"host-{i}") for i in range(3)]
        master = StandinMaster(agents, tmp_path / f"agents{len(masters)}", **kwargs).start()
        masters.append(master)
        return master

    yield make
    for master in masters:
        master.stop()


@pytest.fixture
def runner(tmp_path):
    """Factory: ``runner(config, master)`` -> a started FrameworkRunner (stopped after)."""
    pytest.importorskip("pymesos", reason="pymesos not installed: python engine/cluster/install.py")
    from tickpath.engine.cluster.discovery import DiscoveryPublisher
    from tickpath.engine.cluster.framework import FrameworkRunner
    from tickpath.engine.cluster.store import FileStore

    runners = []

    def make(config, master, start=True):
        n = len(runners)
        r = FrameworkRunner(
            config,
            master.address,
            store=FileStore(tmp_path / f"state{n}.json"),
            discovery=DiscoveryPublisher(tmp_path / f"endpoints{n}.json", "127.0.0.1:0"),
            tick_interval=0.05,
        )
        runners.append(r)
        if start:
            r.start()
        return r

    yield make
    for r in runners:
        r.stop(failover=True)
