"""Unplaced replica slots say why: per rule, what the declined offers lacked.

``tickpath mesos status`` shows each slot without a replica and, per placement rule,
why the offers since the last change were declined (as Marathon's launch queue does);
the framework logs it at INFO once per change.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from standin_master import AgentSpec, wait_for

from tests.cluster.scheduler import STANDIN_COMMAND
from tests.cluster.test_replicas import config, offer, ready
from tickpath.engine.cluster.spec import ReplicaResources


def test_second_replica_on_a_one_host_cluster_names_the_unique_rule():
    state = ready(config(replicas=2))
    state.offers([offer(1, "only-host")], now=2.0)  # slot 0 launches here
    assert state.unplaced(2.0)[0]["slot"] == 1
    state.offers([offer(2, "only-host", ports=(32000, 32009))], now=3.0)
    state.offers([offer(3, "only-host", ports=(33000, 33009))], now=4.0)
    (slot,) = state.unplaced(5.0)
    assert slot["slot"] == 1 and slot["shard"] == 1 and slot["waiting"] == "offers"
    (rule,) = slot["declined_by_rule"].items()
    assert rule[0] == "hostname:UNIQUE"
    assert rule[1]["count"] == 2 and rule[1]["last_host"] == "only-host"
    assert "hostname=only-host already runs tickpath.0." in rule[1]["detail"]
    assert rule[1]["seconds_ago"] == 1.0


def test_each_rule_is_named_with_what_the_offer_lacked():
    state = ready(
        config(replicas=1, resources=ReplicaResources(cpus=2.0, mem=512.0), constraints=())
    )
    state.offers(
        [
            offer(1, "small", cpus=1.0),
            offer(2, "gpu-host", gpus=1.0),
            offer(3, "few", ports=(1, 1)),
        ],
        now=2.0,
    )
    reasons = state.unplaced(2.0)[0]["declined_by_rule"]
    assert set(reasons) == {"resources", "gpu host reserved"}
    assert reasons["resources"]["count"] == 2 and reasons["resources"]["detail"] == "ports: 1 < 2"
    assert reasons["gpu host reserved"]["last_host"] == "gpu-host"
    state.offers([offer(4, "small", cpus=1.0, mem=100.0)], now=3.0)
    assert state.unplaced(3.0)[0]["declined_by_rule"]["resources"]["detail"] == (
        "cpus 1 < 2, mem 100 < 512"
    )


def test_attribute_rules_and_reset_when_the_slot_is_placed():
    from tickpath.engine.cluster.spec import Constraint

    rule = Constraint(attribute="fpga", value="zcu104")
    state = ready(config(replicas=1, constraints=(rule,)))
    state.offers([offer(1, "plain"), offer(2, "other", attributes={"fpga": "u250"})], now=2.0)
    reason = state.unplaced(2.0)[0]["declined_by_rule"]["fpga:zcu104"]
    assert reason["count"] == 2 and reason["detail"] == "fpga=u250, not zcu104"
    state.offers([offer(3, "board", attributes={"fpga": "zcu104"})], now=3.0)
    assert state.unplaced(3.0) == []


def test_waiting_for_reconciliation_or_backoff_is_said():
    from tickpath.engine.cluster import replicas as rs

    state = rs.ReplicaSet(config(replicas=1))
    state.registered("FW", 0.0)
    assert state.unplaced(0.0)[0]["waiting"] == "reconciling"


def test_mesos_status_shows_the_declining_rule_against_the_standin_master(standin, tmp_path):
    pytest.importorskip("pymesos")
    master = standin([AgentSpec("only-host")])
    cmd = [
        sys.executable, "-m", "tickpath.engine.cluster", "mesos", "run",
        "--master", master.address, "--replicas", "2", "--command", STANDIN_COMMAND,
        "--framework-id-file", str(tmp_path / "state.json"),
        "--discovery-file", str(tmp_path / "endpoints.json"),
        "--reconcile-settle", "0.5", "--refuse-seconds", "0.3",
    ]  # fmt: skip
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:

        def declined() -> bool:
            try:
                doc = json.loads((tmp_path / "endpoints.json").read_text())
            except (OSError, ValueError):
                return False
            unplaced = doc.get("unplaced", [])
            return (
                len(doc.get("endpoints", [])) == 1
                and len(unplaced) == 1
                and "hostname:UNIQUE" in unplaced[0]["declined_by_rule"]
            )

        wait_for(declined, 90, "one replica placed, the other declined by hostname:UNIQUE")
        status = subprocess.run(
            [sys.executable, "-m", "tickpath.engine.cluster", "mesos", "status",
             "--discovery", str(tmp_path / "endpoints.json")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "unplaced: shard 1 slot 1, waiting for offers" in status.stdout
        assert "declined by hostname:UNIQUE: hostname=only-host already runs" in status.stdout
        line = "slot 1 (shard 1) unplaced, waiting for offers; offers declined by hostname:UNIQUE"
        wait_for(
            lambda: line in log_path.read_text(errors="replace"),
            60,
            "the INFO line naming the rule",
        )
        # offers keep coming every refuse period (0.3 s): the line is logged once per change
        wait_for(lambda: master.calls_of("DECLINE") and len(master.calls_of("DECLINE")) >= 5, 60,
                 "more declined offers")  # fmt: skip
        assert log_path.read_text(errors="replace").count(line) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
