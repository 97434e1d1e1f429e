"""The replica state machine alone: offers, statuses and timers in, decisions out."""

from __future__ import annotations

import pytest

from tickpath.engine.cluster import replicas as rs
from tickpath.engine.cluster.spec import Constraint, ReplicaResources, SchedulerConfig


def offer(n, hostname, cpus=4.0, mem=4096.0, ports=(31000, 31009), attributes=None, **scalars):
    resources = [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "role": "*"},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}, "role": "*"},
    ]
    for name, value in scalars.items():
        resources.append({"name": name, "type": "SCALAR", "scalar": {"value": value}})
    resources.append(
        {
            "name": "ports",
            "type": "RANGES",
            "ranges": {"range": [{"begin": ports[0], "end": ports[1]}]},
        }
    )
    return {
        "id": {"value": f"O{n}"},
        "agent_id": {"value": f"A-{hostname}"},
        "hostname": hostname,
        "url": {"address": {"hostname": hostname, "ip": f"10.0.0.{n}", "port": 5051}},
        "resources": resources,
        "attributes": [
            {"name": k, "type": "TEXT", "text": {"value": v}} for k, v in (attributes or {}).items()
        ],
    }


def config(**overrides):
    values = dict(replicas=2, reconcile_settle=1.0, backoff_initial=1.0, backoff_factor=2.0)
    values.update(overrides)
    return SchedulerConfig(**values)


def ready(cfg, now=0.0, snapshot=None):
    """A ReplicaSet registered and through reconciliation."""
    state = rs.ReplicaSet(cfg, snapshot)
    state.registered("FW", now)
    state.tick(now + cfg.reconcile_settle)
    assert state.phase == "ready"
    return state


def launches(decisions):
    return [d for d in decisions if isinstance(d, rs.Launch)]


def status(task_id, state, uuid="u", agent="A-h"):
    s = {"task_id": {"value": task_id}, "state": state, "agent_id": {"value": agent}}
    if uuid:
        s["uuid"] = uuid
    return s


def test_launches_only_on_offers_matching_constraints_with_resources_and_ports():
    cfg = config(
        resources=ReplicaResources(cpus=2.0, mem=1024.0, fpgas=1),
        constraints=(Constraint.parse("fpga:zcu104"), Constraint.parse("hostname:UNIQUE")),
    )
    state = ready(cfg)
    decisions = state.offers(
        [
            offer(1, "plain", fpgas=2),
            offer(2, "wrong-board", fpgas=2, attributes={"fpga": "xcu250"}),
            offer(3, "good", fpgas=2, attributes={"fpga": "zcu104"}),
        ],
        now=5.0,
    )
    (launch,) = launches(decisions)
    assert launch.offer_id == {"value": "O3"}
    (task,) = launch.tasks
    res = {r["name"]: r for r in task["resources"]}
    assert res["cpus"]["scalar"]["value"] == 2.0 and res["mem"]["scalar"]["value"] == 1024.0
    assert res["fpgas"]["scalar"]["value"] == 1.0 and "gpus" not in res
    assert res["cpus"]["role"] == "*"  # the offered resource's role is carried over
    assert res["ports"]["ranges"]["range"] == [
        {"begin": 31000, "end": 31000},
        {"begin": 31001, "end": 31001},
    ]
    assert task["agent_id"] == {"value": "A-good"}
    assert task["command"]["value"] == (
        "exec tickpath serve --ingest tcp://*:31000 --publish tcp://*:31001 --symbols-shard 0/2"
    )
    assert task["kill_policy"]["grace_period"]["nanoseconds"] == int(cfg.kill_grace_period * 1e9)
    (decline,) = [d for d in decisions if isinstance(d, rs.Decline)]
    assert decline.offer_ids == [{"value": "O1"}, {"value": "O2"}]
    assert decline.refuse_seconds == cfg.refuse_seconds  # one replica is still wanted


def test_unique_hostname_puts_one_replica_per_host_and_multiple_without_it():
    state = ready(config(replicas=3))
    decisions = state.offers([offer(1, "h1"), offer(2, "h1", ports=(32000, 32009))], now=2.0)
    assert len(launches(decisions)) == 1
    colocated = ready(config(replicas=3, constraints=()))
    (launch,) = launches(colocated.offers([offer(1, "h1")], now=2.0))
    assert len(launch.tasks) == 3  # 4 cpus, 3 replicas of 1 cpu, 6 of the 10 ports
    ports = [
        r["ranges"]["range"] for t in launch.tasks for r in t["resources"] if r["name"] == "ports"
    ]
    assert len({p["begin"] for rng in ports for p in rng}) == 6


def test_offer_too_small_or_with_unwanted_gpus_is_declined():
    state = ready(config(resources=ReplicaResources(cpus=2.0, mem=512.0)))
    decisions = state.offers(
        [
            offer(1, "small", cpus=1.0),
            offer(2, "gpu-host", gpus=1.0),
            offer(3, "few", ports=(1, 1)),
        ],
        now=2.0,
    )
    assert not launches(decisions)
    gpu_state = ready(config(resources=ReplicaResources(gpus=1)))
    (launch,) = launches(gpu_state.offers([offer(1, "cpu-only"), offer(2, "g", gpus=2.0)], 2.0))
    res = {r["name"]: r for r in launch.tasks[0]["resources"]}
    assert res["gpus"]["scalar"]["value"] == 1.0


def test_no_launch_before_explicit_then_implicit_reconciliation():
    cfg = config(replicas=1)
    state = rs.ReplicaSet(cfg)
    assert state.registered("FW", 0.0) == [rs.Reconcile([])]  # no task known: implicit only
    assert state.phase == "implicit"
    assert not launches(state.offers([offer(1, "h")], now=0.5))  # still settling
    state.tick(cfg.reconcile_settle)
    assert state.phase == "ready" and launches(state.offers([offer(2, "h")], now=1.1))

    known = rs.ReplicaSet(cfg)
    known.registered("FW", 0.0)
    known.tick(1.0)
    launch = launches(known.offers([offer(1, "h")], 2.0))[0]
    task_id = launch.tasks[0]["task_id"]["value"]
    decisions = known.registered("FW", 10.0)  # re-registration with a known task
    assert decisions == [
        rs.Reconcile([{"task_id": {"value": task_id}, "agent_id": {"value": "A-h"}}])
    ]
    assert known.phase == "explicit"
    decisions = known.status(status(task_id, "TASK_RUNNING", uuid=None), 10.1)
    assert decisions == [rs.Reconcile([])]  # explicit answered: now implicit
    assert known.phase == "implicit"
    assert not launches(known.offers([offer(2, "other")], 10.2))
    known.tick(10.1 + cfg.reconcile_settle)
    assert known.phase == "ready"


def test_explicit_reconciliation_is_retried_then_gives_way_to_implicit():
    cfg = config(replicas=1, reconcile_retry=1.0, reconcile_attempts=2)
    state = ready(cfg)
    launches(state.offers([offer(1, "h")], 2.0))
    assert isinstance(state.registered("FW", 5.0)[0], rs.Reconcile)
    assert state.tick(5.5) == []
    retry = state.tick(6.0)
    assert len(retry) == 1 and retry[0].tasks  # second explicit attempt
    assert state.tick(7.0) == [rs.Reconcile([])]
    assert state.phase == "implicit"


def test_failed_replica_relaunched_with_exponential_backoff():
    cfg = config(replicas=1, backoff_initial=1.0, backoff_factor=2.0, backoff_max=5.0)
    state = ready(cfg)
    now = 2.0
    delays = []
    for n in range(5):
        (launch,) = launches(state.offers([offer(n, "h")], now))
        task_id = launch.tasks[0]["task_id"]["value"]
        state.status(status(task_id, "TASK_RUNNING", uuid=f"r{n}"), now)
        state.status(status(task_id, "TASK_FAILED", uuid=f"f{n}"), now + 0.1)
        failed_at = now + 0.1
        assert not launches(state.offers([offer(100 + n, "h")], failed_at + 0.01))
        now = state.slots[0].not_before
        delays.append(round(now - failed_at, 6))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_resets_after_a_long_run_and_lost_tasks_relaunch_at_once():
    cfg = config(replicas=1, backoff_reset_after=10.0)
    state = ready(cfg)
    task_id = launches(state.offers([offer(1, "h")], 2.0))[0].tasks[0]["task_id"]["value"]
    state.slots[0].failures = 4
    state.status(status(task_id, "TASK_RUNNING"), 2.0)
    state.status(status(task_id, "TASK_FAILED", uuid="x"), 20.0)
    assert state.slots[0].failures == 1 and state.slots[0].not_before == 21.0
    task_id = launches(state.offers([offer(2, "h")], 21.0))[0].tasks[0]["task_id"]["value"]
    state.status(status(task_id, "TASK_LOST", uuid="y"), 22.0)
    assert state.slots[0].not_before == 22.0 and state.counters.lost == 1


def test_status_updates_are_idempotent_and_acknowledged():
    state = ready(config(replicas=1))
    task_id = launches(state.offers([offer(1, "h")], 2.0))[0].tasks[0]["task_id"]["value"]
    first = state.status(status(task_id, "TASK_RUNNING", uuid="a"), 3.0)
    again = state.status(status(task_id, "TASK_RUNNING", uuid="b"), 3.1)
    assert rs.Acknowledge(status(task_id, "TASK_RUNNING", uuid="a")) in first
    assert rs.Acknowledge(status(task_id, "TASK_RUNNING", uuid="b")) in again
    assert state.counters.duplicate_updates == 1
    assert state.tasks[task_id].running_since == 3.0
    state.status(status(task_id, "TASK_FAILED", uuid="c"), 4.0)
    state.status(status(task_id, "TASK_FAILED", uuid="d"), 4.1)  # re-sent: no second failure
    assert state.counters.failed == 1 and state.slots[0].failures == 1
    no_uuid = state.status(status(task_id, "TASK_LOST", uuid=None), 4.2)
    assert not any(isinstance(d, rs.Acknowledge) for d in no_uuid)


def test_suppress_when_satisfied_and_revive_when_a_replica_is_wanted():
    cfg = config(replicas=1)
    state = ready(cfg)
    decisions = state.offers([offer(1, "h"), offer(2, "g")], 2.0)
    assert rs.Suppress() in decisions and state.suppressed
    task_id = launches(decisions)[0].tasks[0]["task_id"]["value"]
    failed = state.status(status(task_id, "TASK_FAILED"), 3.0)
    assert rs.Revive() not in failed  # still backing off
    assert state.tick(3.0 + cfg.backoff_initial) == [rs.Revive()]
    assert not state.suppressed


def test_scale_down_kills_highest_slots_and_retries_lost_kills_then_scale_up():
    cfg = config(replicas=3, constraints=(), kill_grace_period=2.0, kill_retry_after=1.0)
    state = ready(cfg)
    (launch,) = launches(state.offers([offer(1, "h")], 2.0))
    ids = {int(t["task_id"]["value"].split(".")[1]): t["task_id"]["value"] for t in launch.tasks}
    for task_id in ids.values():
        state.status(status(task_id, "TASK_RUNNING"), 2.0)
    decisions = state.scale(1, 5.0)
    kills = [d for d in decisions if isinstance(d, rs.Kill)]
    assert sorted(k.task_id["value"] for k in kills) == sorted([ids[1], ids[2]])
    assert [e["slot"] for e in state.endpoints()] == [0]
    assert not [d for d in state.tick(7.0) if isinstance(d, rs.Kill)]
    retried = [d for d in state.tick(8.0) if isinstance(d, rs.Kill)]
    assert len(retried) == 2  # no terminal update after grace + retry: KILL again
    for slot in (1, 2):
        state.status(status(ids[slot], "TASK_KILLED"), 8.5)
    assert state.counters.killed == 2 and not state.slots.get(1)
    assert rs.Revive() in state.scale(2, 9.0)
    (launch,) = launches(state.offers([offer(2, "h")], 9.1))
    assert [t["task_id"]["value"].split(".")[1] for t in launch.tasks] == ["1"]


def test_rescinded_offer_still_queued_is_not_used():
    state = ready(config(replicas=1))
    state.offer_rescinded({"value": "O1"})
    decisions = state.offers([offer(1, "h")], 2.0)
    assert decisions == [] and state.counters.rescinded == 1


def test_agent_loss_frees_its_slots_for_relaunch_elsewhere():
    state = ready(config(replicas=2))
    a = launches(state.offers([offer(1, "h1")], 2.0))[0].tasks[0]
    launches(state.offers([offer(2, "h2")], 2.0))
    state.agent_lost(a["agent_id"], 3.0)
    assert state.unfilled_slots() == [0] and state.counters.lost == 1
    (launch,) = launches(state.offers([offer(3, "h3")], 3.1))
    assert launch.tasks[0]["task_id"]["value"].startswith("tickpath.0.")


def test_snapshot_restores_tasks_and_kills_unknown_strays():
    cfg = config(replicas=1)
    state = ready(cfg)
    task_id = launches(state.offers([offer(1, "h")], 2.0))[0].tasks[0]["task_id"]["value"]
    snapshot = state.snapshot()
    restored = rs.ReplicaSet(cfg, snapshot)
    assert restored.framework_id == "FW"
    assert restored.registered("FW", 0.0)[0].tasks[0]["task_id"] == {"value": task_id}
    restored.status(status(task_id, "TASK_RUNNING", uuid=None), 0.1)
    restored.tick(0.1 + cfg.reconcile_settle)
    assert not launches(restored.offers([offer(2, "other")], 1.0))  # slot 0 is filled
    stray = restored.status(status("tickpath.0.deadbeef0000", "TASK_RUNNING", uuid=None), 1.1)
    assert rs.Kill({"value": "tickpath.0.deadbeef0000"}, {"value": "A-h"}) in stray
    foreign = restored.status(status("someone-else", "TASK_RUNNING", uuid=None), 1.2)
    assert not [d for d in foreign if isinstance(d, rs.Kill)]


def test_config_validation():
    with pytest.raises(ValueError):
        SchedulerConfig(replicas=1, command="tickpath serve")
    with pytest.raises(ValueError):
        Constraint.parse("fpga")
    with pytest.raises(ValueError):
        ReplicaResources(cpus=0)
    info = config(resources=ReplicaResources(gpus=1)).framework_info("FW")
    assert info["failover_timeout"] == 604800.0 and info["checkpoint"] is True
    assert {"type": "GPU_RESOURCES"} in info["capabilities"] and info["id"] == {"value": "FW"}


def test_revive_is_repeated_when_no_offer_comes_while_replicas_are_wanted():
    cfg = config(replicas=1, revive_after=30.0)
    state = ready(cfg, now=0.0)
    assert rs.Revive() not in state.tick(10.0)
    assert state.tick(cfg.reconcile_settle + 30.0) == [rs.Revive()]
    assert state.tick(cfg.reconcile_settle + 31.0) == []  # not again right away
    launches(state.offers([offer(1, "h")], 40.0))
    assert rs.Revive() not in state.tick(80.0)  # nothing wanted any more


def test_redundant_replicas_take_a_state_port_and_a_relaunch_starts_from_its_twin():
    from tickpath.engine.cluster.spec import REDUNDANT_COMMAND

    cfg = config(replicas=4, shards=2, command=REDUNDANT_COMMAND)
    assert cfg.ports_per_replica == 3
    state = ready(cfg)
    tasks = {}
    for n in range(4):  # one replica per host (hostname:UNIQUE by default)
        (launch,) = launches(state.offers([offer(n + 1, f"h{n}")], 2.0 + n))
        (task,) = launch.tasks
        slot = int(task["labels"]["labels"][0]["value"])
        tasks[slot] = task
        ranges = next(r for r in task["resources"] if r["name"] == "ports")["ranges"]["range"]
        assert ranges == [{"begin": p, "end": p} for p in (31000, 31001, 31002)]
        command = task["command"]["value"]
        if slot < 2:  # no twin ran at its launch: nothing to take the state from
            assert command.endswith("--state-endpoint tcp://*:31002")
        else:  # its shard's first replica runs: start from its state
            assert command.endswith(f"--state-from tcp://10.0.0.{slot - 1}:31002")
        ports = {p["name"]: p["number"] for p in task["discovery"]["ports"]["ports"]}
        assert ports == {"ingest": 31000, "publish": 31001, "state": 31002}
        state.status(status(task["task_id"]["value"], "TASK_RUNNING", uuid=f"r{n}"), 2.5 + n)
    listed = {e["slot"]: e for e in state.endpoints()}
    assert listed[1]["state"] == "tcp://10.0.0.2:31002"
    # slot 3 (shard 1) dies; its relaunch takes the state of slot 1, the running twin
    state.status(status(tasks[3]["task_id"]["value"], "TASK_FAILED", uuid="f"), 10.0)
    relaunch_at = state.slots[3].not_before
    (launch,) = launches(state.offers([offer(9, "h9")], relaunch_at))
    (task,) = launch.tasks
    assert task["command"]["value"].endswith(
        "--state-endpoint tcp://*:31002 --state-from tcp://10.0.0.2:31002"
    )
    # the persisted form keeps the state port (a restarted scheduler still knows the twin)
    restored = rs.ReplicaSet(cfg, state.snapshot())
    assert restored.running_twin(3).slot == 1
    assert {t.state_port for t in restored.tasks.values()} == {31002}


def test_a_command_without_a_state_port_takes_two_ports():
    cfg = config(replicas=2, shards=1)
    assert cfg.ports_per_replica == 2
    with pytest.raises(ValueError, match="state_port"):
        config(command="serve {ingest_port} {publish_port} {state_from}")
