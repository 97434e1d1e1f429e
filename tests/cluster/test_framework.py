"""The scheduler with the real pymesos driver against the stand-in master (verified over HTTP)."""

from __future__ import annotations

import collections

from standin_master import AgentSpec, wait_for

from tests.cluster.scheduler import fast_config
from tickpath.engine.cluster.discovery import follow_endpoints
from tickpath.engine.cluster.spec import Constraint, ReplicaResources


def live_by_slot(master, framework_id=None):
    by_slot = collections.defaultdict(list)
    for task in master.live_tasks(framework_id):
        by_slot[int(task.task_id.split(".")[1])].append(task.task_id)
    return dict(by_slot)


def all_bound(master):
    """True once every live stand-in replica has bound its sockets (printed `ready`)."""
    return all(
        t.log_path.exists() and t.log_path.read_text().startswith("ready")
        for t in master.live_tasks()
    )


def running_endpoints(runner, n):
    return wait_for(
        lambda: len(runner.status().get("endpoints", [])) == n and runner.status()["endpoints"],
        120,
        f"{n} running replicas",
    )


def test_replicas_launched_on_matching_offers_only(standin, runner):
    agents = [
        AgentSpec("plain-0"),
        AgentSpec("fpga-0", scalars={"fpgas": 2, "gpus": 1}, attributes={"fpga": "zcu104"}),
        AgentSpec("other-board", scalars={"fpgas": 2, "gpus": 1}, attributes={"fpga": "xcu250"}),
        AgentSpec("fpga-1", scalars={"fpgas": 2, "gpus": 1}, attributes={"fpga": "zcu104"}),
    ]
    master = standin(agents)
    cfg = fast_config(
        replicas=2,
        resources=ReplicaResources(cpus=1.5, mem=300.0, gpus=1, fpgas=1),
        constraints=(Constraint.parse("fpga:zcu104"), Constraint.parse("hostname:UNIQUE")),
    )
    r = runner(cfg, master)
    endpoints = running_endpoints(r, 2)
    assert {e["hostname"] for e in endpoints} == {"fpga-0", "fpga-1"}
    assert [e["shard"] for e in endpoints] == [0, 1]

    (subscribe,) = master.subscriptions
    info = subscribe["subscribe"]["framework_info"]
    assert info["failover_timeout"] == 604800.0 and info["checkpoint"] is True
    assert {"type": "GPU_RESOURCES"} in info["capabilities"]

    assert len(master.launched) == 2
    for task_info, endpoint in zip(
        sorted(master.launched, key=lambda t: t["task_id"]["value"]), endpoints
    ):
        res = {x["name"]: x for x in task_info["resources"]}
        assert res["cpus"]["scalar"]["value"] == 1.5 and res["mem"]["scalar"]["value"] == 300.0
        assert res["gpus"]["scalar"]["value"] == 1.0 and res["fpgas"]["scalar"]["value"] == 1.0
        ingest, publish = (rng["begin"] for rng in res["ports"]["ranges"]["range"])
        assert endpoint["ingest"] == f"tcp://127.0.0.1:{ingest}"
        assert endpoint["publish"] == f"tcp://127.0.0.1:{publish}"
        assert f"--ingest tcp://127.0.0.1:{ingest}" in task_info["command"]["value"]
        assert f"--symbols-shard {endpoint['shard']}/2" in task_info["command"]["value"]
    # Offers that did not match were declined with a refuse filter, never accepted.
    accepted_agents = {master.launched[i]["agent_id"]["value"] for i in range(len(master.launched))}
    assert accepted_agents == {"agent-1-S1", "agent-3-S3"}
    declines = master.calls_of("DECLINE")
    assert declines and all("refuse_seconds" in d["decline"]["filters"] for d in declines)
    wait_for(lambda: master.calls_of("SUPPRESS"), 120, "SUPPRESS once satisfied")
    # Every update that carried a uuid was acknowledged explicitly.
    wait_for(lambda: not master.framework(r.replicas.framework_id).unacked, 120, "acknowledgements")
    assert len(master.calls_of("ACKNOWLEDGE")) >= 4  # STARTING + RUNNING per replica
    assert sorted(follow_endpoints(str(r.discovery.path))) == sorted(
        e["publish"] for e in endpoints
    )
    assert follow_endpoints(r.discovery.http_address) == follow_endpoints(str(r.discovery.path))


def test_killed_replica_relaunched_with_backoff(standin, runner):
    master = standin([AgentSpec("h0"), AgentSpec("h1")])
    r = runner(fast_config(replicas=1, backoff_initial=0.5, backoff_factor=2.0), master)
    running_endpoints(r, 1)
    gaps = []
    for _ in range(3):
        (task_id,) = [t.task_id for t in master.live_tasks()]
        n_launched = len(master.launched)
        master.crash_task(task_id)
        task = master.tasks[task_id]
        wait_for(lambda t=task: t.state == "TASK_FAILED", 120, "TASK_FAILED")
        wait_for(lambda n=n_launched: len(master.launched) > n, 120, "relaunch")
        accept_times = [t for t, c in zip(master.call_times, master.calls) if c["type"] == "ACCEPT"]
        gaps.append(accept_times[-1] - task.ended_at)
        wait_for(lambda: len(master.live_tasks()) == 1, 120, "one live replica")
    assert r.replicas.counters.failed == 3
    # 0.5 s, 1 s, 2 s: no relaunch comes before its backoff is over (a lower bound, which
    # load cannot break: how much later it comes depends on the machine and is not checked)
    backoffs = [r.replicas.config.backoff(n) for n in (1, 2, 3)]
    assert backoffs == [0.5, 1.0, 2.0]
    assert all(gap >= backoff - 0.05 for gap, backoff in zip(gaps, backoffs)), (gaps, backoffs)
    assert max(len(v) for v in live_by_slot(master).values()) == 1


def test_agent_loss_relaunches_on_another_agent(standin, runner):
    master = standin([AgentSpec("h0"), AgentSpec("h1"), AgentSpec("h2")])
    r = runner(fast_config(replicas=2), master)
    endpoints = running_endpoints(r, 2)
    lost_host = endpoints[0]["hostname"]
    lost_agent = next(a for a in master.agents.values() if a.spec.hostname == lost_host)
    master.lose_agent(lost_agent.agent_id)
    wait_for(
        lambda: (
            len(r.status()["endpoints"]) == 2
            and lost_host not in {e["hostname"] for e in r.status()["endpoints"]}
        ),
        120,
        "replacement on another agent",
    )
    assert r.replicas.counters.lost >= 1 and r.errors == 0
    assert len(master.live_tasks()) == 2


def test_rescinded_offers_are_handled(standin, runner):
    master = standin([AgentSpec(f"h{i}") for i in range(5)])
    r = runner(fast_config(replicas=2), master)
    running_endpoints(r, 2)
    master.rescind_next_offers(3)  # each of the next 3 offers is rescinded right after it
    r.scale(4)
    endpoints = running_endpoints(r, 4)
    rescinded = {
        e["rescind"]["offer_id"]["value"] for e in master.events_sent if e["type"] == "RESCIND"
    }
    assert len(rescinded) == 3
    lost = {t["task_id"]["value"] for t in master.launched}  # agents never launch these
    for call in master.calls_of("ACCEPT"):
        if {o["value"] for o in call["accept"]["offer_ids"]} & rescinded:
            # Used before the rescind was seen: the master answered TASK_LOST, and the
            # replica was relaunched on a valid offer.
            for info in call["accept"]["operations"][0]["launch"]["task_infos"]:
                assert info["task_id"]["value"] not in lost
    # Each rescinded offer the scheduler wanted either was skipped (its RESCIND was already
    # queued) or ended as a lost launch that was replaced.
    assert r.replicas.counters.rescinded + r.replicas.counters.lost >= 1
    assert len(endpoints) == 4 and len(master.live_tasks()) == 4
    assert all(len(v) == 1 for v in live_by_slot(master).values())


def test_dropped_stream_reregisters_and_reconciles_without_relaunching(standin, runner):
    master = standin()
    r = runner(fast_config(replicas=2), master)
    running_endpoints(r, 2)
    before = {t.task_id for t in master.live_tasks()}
    n_reconcile = len(master.calls_of("RECONCILE"))
    master.drop_stream()
    wait_for(lambda: len(master.subscriptions) == 2, 120, "re-subscription")
    second = master.subscriptions[1]
    assert second["framework_id"] == {"value": r.replicas.framework_id}
    wait_for(lambda: r.replicas.phase == "ready", 120, "reconciled")
    explicit, implicit = master.calls_of("RECONCILE")[n_reconcile : n_reconcile + 2]
    assert {t["task_id"]["value"] for t in explicit["reconcile"]["tasks"]} == before
    assert implicit["reconcile"]["tasks"] == []
    assert {t.task_id for t in master.live_tasks()} == before
    assert len(master.launched) == 2 and r.registrations == 2


def test_heartbeat_watchdog_reconnects_a_silent_stream(standin, runner):
    master = standin(heartbeat_interval=0.5)
    r = runner(fast_config(replicas=1, heartbeat_timeout=2.0), master)
    running_endpoints(r, 1)
    master.hang_stream()  # TCP stays open, nothing arrives: pymesos alone never notices
    wait_for(lambda: r.reconnects >= 1, 120, "watchdog reconnect")
    wait_for(lambda: len(master.subscriptions) >= 2 and r.registrations >= 2, 120, "re-subscribed")
    assert master.subscriptions[-1]["framework_id"] == {"value": r.replicas.framework_id}
    assert len(master.launched) == 1 and not master.calls_of("TEARDOWN")


def test_scale_down_kills_with_grace_and_scale_up_launches(standin, runner):
    master = standin([AgentSpec(f"h{i}") for i in range(4)])
    r = runner(fast_config(replicas=3, kill_grace_period=5.0), master)
    running_endpoints(r, 3)
    wait_for(lambda: all_bound(master), 120, "replicas bound")
    r.scale(1)
    wait_for(lambda: len(master.live_tasks()) == 1, 120, "scale down to 1")
    kills = master.calls_of("KILL")
    assert len(kills) == 2
    assert {int(k["kill"]["task_id"]["value"].split(".")[1]) for k in kills} == {1, 2}
    killed = [t for t in master.tasks.values() if t.state == "TASK_KILLED"]
    codes = [t.proc.returncode for t in killed]
    assert codes == [0, 0], codes  # SIGTERM within the grace period: a clean exit
    assert [e["slot"] for e in r.status()["endpoints"]] == [0]
    r.scale(3)
    endpoints = running_endpoints(r, 3)
    assert [e["slot"] for e in endpoints] == [0, 1, 2]
    assert master.calls_of("REVIVE")
    assert all(len(v) == 1 for v in live_by_slot(master).values())


def test_exception_in_scheduler_logic_does_not_tear_down(standin, runner):
    master = standin()
    r = runner(fast_config(replicas=2), master)
    running_endpoints(r, 2)
    # A malformed offer makes the scheduling logic raise on the scheduler thread.
    master.inject_event({"type": "OFFERS", "offers": {"offers": [{"hostname": "no-id"}]}})
    r.scale(3)
    wait_for(lambda: r.errors >= 1, 120, "the error to be caught")
    endpoints = running_endpoints(r, 3)
    assert not master.calls_of("TEARDOWN")
    assert not master.framework(r.replicas.framework_id).removed
    assert len(endpoints) == 3 and len(master.live_tasks()) == 3


def test_master_error_event_is_reported(standin, runner):
    master = standin()
    r = runner(fast_config(replicas=1), master)
    running_endpoints(r, 1)
    master.inject_event({"type": "ERROR", "error": {"message": "Framework has been removed"}})
    wait_for(lambda: r.fatal_error, 120, "fatal error")
    assert "Framework has been removed" in r.fatal_error
