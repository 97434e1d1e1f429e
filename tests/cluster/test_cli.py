"""``mesos run`` as a separate process: restart after SIGKILL, and its one-line errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from standin_master import wait_for

from tests.cluster.scheduler import STANDIN_COMMAND
from tickpath.engine.cluster.cli import add_mesos_parser, config_from_args

REPO = Path(__file__).resolve().parents[2]


def mesos_run(master_address, tmp_path, *extra, log_name="scheduler"):
    cmd = [
        sys.executable,
        "-m",
        "tickpath.engine.cluster",
        "mesos",
        "run",
        "--master",
        master_address,
        "--replicas",
        "2",
        "--command",
        STANDIN_COMMAND,
        "--framework-id-file",
        str(tmp_path / "state.json"),
        "--discovery-file",
        str(tmp_path / "endpoints.json"),
        "--reconcile-settle",
        "0.5",
        "--refuse-seconds",
        "0.3",
        "--kill-grace",
        "2",
        *extra,
    ]
    log = open(tmp_path / f"{log_name}.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def discovery(tmp_path):
    path = tmp_path / "endpoints.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_restarted_scheduler_reregisters_reconciles_and_launches_no_duplicates(
    standin, tmp_path, processes
):
    pytest.importorskip("pymesos")
    master = standin()
    first = mesos_run(master.address, tmp_path, log_name="first")
    processes.append(first)
    wait_for(lambda: len(discovery(tmp_path).get("endpoints", [])) == 2, 60, "2 replicas")
    framework_id = json.loads((tmp_path / "state.json").read_text())["framework_id"]
    tasks_before = {t.task_id for t in master.live_tasks()}
    assert len(tasks_before) == 2

    first.send_signal(signal.SIGKILL)  # no goodbye: the master only sees the stream close
    first.wait(timeout=10)
    wait_for(lambda: master.framework(framework_id).stream is None, 120, "stream closed")
    assert {t.task_id for t in master.live_tasks()} == tasks_before  # failover_timeout holds

    n_calls = len(master.calls)
    second = mesos_run(master.address, tmp_path, log_name="second")
    processes.append(second)
    wait_for(lambda: len(master.subscriptions) == 2, 60, "re-subscription")
    assert master.subscriptions[1]["framework_id"] == {"value": framework_id}
    info = master.subscriptions[1]["subscribe"]["framework_info"]
    assert info["failover_timeout"] == 604800.0 and info["checkpoint"] is True
    wait_for(
        lambda: (
            discovery(tmp_path).get("phase") == "ready"
            and len(discovery(tmp_path)["endpoints"]) == 2
            and discovery(tmp_path)["registrations"] == 1
        ),
        60,
        "reconciled by the new scheduler",
    )

    def reconciles_since():
        return [c for c in master.calls[n_calls:] if c["type"] == "RECONCILE"]

    # explicit, then implicit: the second may still be on its way when "ready" is written
    wait_for(lambda: len(reconciles_since()) >= 2, 120, "explicit and implicit reconciliation")
    reconciles = reconciles_since()
    explicit = {t["task_id"]["value"] for t in reconciles[0]["reconcile"]["tasks"]}
    assert explicit == tasks_before and reconciles[1]["reconcile"]["tasks"] == []
    wait_for(lambda: master.calls_of("SUPPRESS")[-1:] and len(master.calls) > n_calls + 4, 120, "")
    assert {t.task_id for t in master.live_tasks()} == tasks_before
    assert len(master.launched) == 2 and not master.calls_of("KILL")

    second.send_signal(signal.SIGTERM)  # a clean stop fails over: the replicas keep running
    assert second.wait(timeout=20) == 0
    assert not master.calls_of("TEARDOWN")
    assert {t.task_id for t in master.live_tasks()} == tasks_before


def test_refused_framework_is_one_line_error(standin, tmp_path, processes):
    pytest.importorskip("pymesos")
    master = standin()
    master.refuse_subscriptions(403, "Framework is not authorized to subscribe")
    proc = mesos_run(master.address, tmp_path, "--register-timeout", "30")
    processes.append(proc)
    assert proc.wait(timeout=60) == 2
    output = (tmp_path / "scheduler.log").read_text()
    errors = [line for line in output.splitlines() if line.startswith("tickpath mesos: error:")]
    assert len(errors) == 1, output
    # pymesos quotes the body only as far as it has read it: the status is what is certain.
    assert "refused the framework" in errors[0] and "HTTP 403" in errors[0], output
    assert "Traceback" not in output
    assert master.stream_answers and set(master.stream_answers) == {403}


def test_unreachable_master_is_one_line_error(tmp_path, processes):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = mesos_run(f"127.0.0.1:{port}", tmp_path)
    processes.append(proc)
    assert proc.wait(timeout=60) == 2
    output = (tmp_path / "scheduler.log").read_text().strip()
    assert output.startswith("tickpath mesos: error: master 127.0.0.1:") and "\n" not in output
    assert "unreachable" in output


def test_parser_builds_the_config_with_default_unique_hosts():
    import argparse

    parser = argparse.ArgumentParser()
    add_mesos_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        "mesos run --master zk://z1:2181,z2:2181/mesos --replicas 3 --shards 6 --cpus 2 "
        "--mem 2048 --gpus 1 --fpgas 1 --constraint fpga:zcu104".split()
    )
    config = config_from_args(args)
    assert config.replicas == 3 and config.shard_count == 6
    assert (config.resources.cpus, config.resources.mem) == (2.0, 2048.0)
    assert (config.resources.gpus, config.resources.fpgas) == (1, 1)
    assert [str(c) for c in config.constraints] == ["fpga:zcu104", "hostname:UNIQUE"]
    assert config.failover_timeout == 604800.0
    status = parser.parse_args(["mesos", "status", "--discovery", "x.json"])
    assert status.func.__name__ == "status_command"


def test_status_prints_replicas_from_discovery(tmp_path, capsys):
    import argparse

    document = {
        "framework_id": "FW",
        "phase": "ready",
        "connected": True,
        "replicas": 1,
        "updated_unix": 0,
        "endpoints": [
            {
                "shard": 0,
                "shards": 1,
                "slot": 0,
                "task_id": "tickpath.0.abc",
                "hostname": "agent-a",
                "ingest": "tcp://10.0.0.1:31000",
                "publish": "tcp://10.0.0.1:31001",
            }
        ],
    }
    (tmp_path / "d.json").write_text(json.dumps(document))
    parser = argparse.ArgumentParser()
    add_mesos_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mesos", "status", "--discovery", str(tmp_path / "d.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "framework FW" in out and "tcp://10.0.0.1:31001" in out and "agent-a" in out
    args = parser.parse_args(["mesos", "status", "--discovery", str(tmp_path / "missing.json")])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("tickpath mesos: error: cannot read discovery")


def test_redundant_replicas_get_the_state_transfer_command():
    import argparse

    from tickpath.engine.cluster.spec import DEFAULT_COMMAND, REDUNDANT_COMMAND

    parser = argparse.ArgumentParser()
    add_mesos_parser(parser.add_subparsers(dest="command"))
    twins = config_from_args(
        parser.parse_args("mesos run --master m:5050 --replicas 4 --shards 2".split())
    )
    assert twins.command == REDUNDANT_COMMAND and twins.ports_per_replica == 3
    single = config_from_args(parser.parse_args("mesos run --master m:5050 --replicas 4".split()))
    assert single.command == DEFAULT_COMMAND and single.ports_per_replica == 2
