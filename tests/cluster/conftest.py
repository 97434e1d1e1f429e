"""Fixtures for the Mesos tests: a stand-in master with agents, and scheduler runners."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # standin_master, also run as a script by the agents

from standin_master import AgentSpec, StandinMaster  # noqa: E402


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.report_call``) for the fixtures."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def standin(tmp_path, request):
    """Factory: ``standin(agent_specs, **kwargs)`` -> a started StandinMaster (stopped after).

    When the test failed, every task's agent, state, exit status and output tail are
    printed (pytest shows them under "Captured stdout teardown").
    """
    masters = []

    def make(agents=None, **kwargs):
        agents = agents or [AgentSpec(f"host-{i}") for i in range(3)]
        master = StandinMaster(agents, tmp_path / f"agents{len(masters)}", **kwargs).start()
        masters.append(master)
        return master

    yield make
    report = getattr(request.node, "report_call", None)
    for master in masters:
        if report is None or report.failed:
            print(master.describe())
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
