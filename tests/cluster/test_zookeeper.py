"""A zk:// master URI: pymesos finds the leading master in ZooKeeper; our state goes there too.

Needs a ZooKeeper server (Debian: ``apt-get install zookeeper``); skipped without one.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from standin_master import free_ports, wait_for
from test_cli import discovery, mesos_run

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not (ZOOKEEPER_JAR.exists() and shutil.which("java")),
        reason="ZooKeeper not installed (apt-get install zookeeper)",
    ),
]


@pytest.fixture
def zookeeper(tmp_path):
    """A loopback-only ZooKeeper server; yields ``127.0.0.1:PORT``."""
    kazoo_client = pytest.importorskip("kazoo.client")
    (port,) = free_ports(1)
    data = tmp_path / "zk"
    data.mkdir()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(
        f"tickTime=500\ndataDir={data}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"
    )
    log = open(tmp_path / "zookeeper.log", "wb")
    proc = subprocess.Popen(
        [
            "java",
            "-Xmx128m",
            "-cp",
            f"/etc/zookeeper/conf:{ZOOKEEPER_JAR}",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(cfg),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            zk = kazoo_client.KazooClient(hosts=address, timeout=2)
            try:
                zk.start(timeout=2)
                zk.stop()
                zk.close()
                break
            except Exception:
                zk.close()
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_zk_master_uri_finds_the_leader_and_keeps_state_in_zookeeper(standin, zookeeper, tmp_path):
    pytest.importorskip("pymesos")
    from kazoo.client import KazooClient

    master = standin()
    host, port = master.address.split(":")
    zk = KazooClient(hosts=zookeeper, timeout=10)
    zk.start(timeout=10)
    proc = None
    try:
        # What a Mesos master leading the cluster leaves in ZooKeeper.
        info = {
            "id": "standin",
            "hostname": host,
            "ip": 16777343,
            "port": int(port),
            "version": "1.11.0",
            "address": {"hostname": host, "ip": host, "port": int(port)},
        }
        zk.create(
            "/mesos/json.info_",
            json.dumps(info).encode(),
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        proc = mesos_run(
            f"zk://{zookeeper}/mesos", tmp_path, "--zk-state-path", "/tickpath/test-state"
        )
        wait_for(lambda: len(discovery(tmp_path).get("endpoints", [])) == 2, 60, "2 replicas")
        framework_id = json.loads((tmp_path / "state.json").read_text())["framework_id"]
        data, _ = zk.get("/tickpath/test-state")
        state = json.loads(data)
        assert state["framework_id"] == framework_id
        assert {t["task_id"] for t in state["tasks"]} == {t.task_id for t in master.live_tasks()}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        zk.stop()
        zk.close()
