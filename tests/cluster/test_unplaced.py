"""Why a replica is not placed: per rule, in the replica state, the status document and its log."""

from __future__ import annotations

import logging

import pytest
from conftest import fast_config
from standin_master import AgentSpec, wait_for
from test_replicas import config, launches, offer, ready

from tickpath.engine.cluster.spec import Constraint, ReplicaResources

UNIQUE_HOST = "constraint hostname:UNIQUE: a replica already runs on hostname only-host"


def test_the_declining_rule_is_named_per_offer():
    cfg = config(
        resources=ReplicaResources(cpus=2.0, mem=1024.0),
        constraints=(Constraint.parse("rack:r1"), Constraint.parse("hostname:UNIQUE")),
    )
    state = ready(cfg)
    assert len(launches(state.offers([offer(1, "only-host", attributes={"rack": "r1"})], 5.0))) == 1
    assert state.declined_because == {}  # nothing declined yet
    decisions = state.offers(
        [
            offer(2, "only-host", attributes={"rack": "r1"}),
            offer(3, "no-rack"),
            offer(4, "rack-2", attributes={"rack": "r2"}),
            offer(5, "small", cpus=1.0, attributes={"rack": "r1"}),
            offer(6, "gpu", gpus=1, attributes={"rack": "r1"}),
        ],
        6.0,
    )
    assert not launches(decisions)
    assert state.declined_because == {
        UNIQUE_HOST: 1,
        "constraint rack:r1: no rack attribute": 1,
        "constraint rack:r1: the agent has r2": 1,
        "resources: cpus 1 < 2 needed": 1,
        "GPU agent: kept for replicas that need GPUs": 1,
    }
    # once every slot is placed, nothing is reported
    state.offers([offer(7, "second", attributes={"rack": "r1"})], 7.0)
    assert state.unfilled_slots() == [] and state.declined_because == {}


@pytest.mark.timeout(120)
def test_status_and_log_name_the_rule_against_the_standin_master(standin, runner, caplog):
    caplog.set_level(logging.INFO, logger="tickpath")
    master = standin([AgentSpec("only-host")])
    r = runner(fast_config(replicas=2), master)  # default rule: one replica per host
    status = wait_for(
        lambda: (s := r.status()).get("declined_because") and s, 30, "a declined offer"
    )
    assert status["unplaced"] == [1]
    assert set(status["declined_because"]) == {UNIQUE_HOST}
    logged = [m for m in caplog.messages if "unplaced" in m]
    assert logged and UNIQUE_HOST in logged[0]
    assert len(logged) == 1  # once per change, not per offer


def test_mesos_status_prints_unplaced_slots_and_the_declining_rules(tmp_path, capsys):
    import argparse
    import json

    from tickpath.engine.cluster.cli import add_mesos_parser

    document = {
        "framework_id": "FW",
        "phase": "ready",
        "connected": True,
        "replicas": 2,
        "updated_unix": 0,
        "endpoints": [],
        "unplaced": [1],
        "declined_because": {UNIQUE_HOST: 7, "resources: mem 256 < 1024 needed": 2},
    }
    (tmp_path / "d.json").write_text(json.dumps(document))
    parser = argparse.ArgumentParser()
    add_mesos_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mesos", "status", "--discovery", str(tmp_path / "d.json")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "unplaced slots: 1" in lines
    assert lines[-2:] == [
        f"  declined 7 offers: {UNIQUE_HOST}",
        "  declined 2 offers: resources: mem 256 < 1024 needed",
    ]
