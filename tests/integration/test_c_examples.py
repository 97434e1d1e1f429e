"""examples/c: a C publisher and subscriber, written from the README, against a real engine.

Built with gcc against the system libzmq (Debian: libzmq3-dev).  The subscriber
decodes every result kind from the README's byte tables; each field it prints is
compared with the Python decoder's reading of the same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from tests.serving import ANY_PORT, bound_endpoints
from tests.waiting import wait_until
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.engine.wire.human import record_to_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "c"
DEADLINE_S = 300.0
N_RECORDS = 3_000

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or not Path("/usr/include/zmq.h").exists(),
    reason="needs gcc and libzmq's header (Debian: apt-get install libzmq3-dev)",
)


def _build(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("publisher", "subscriber"):
        exe = tmp_path / name
        subprocess.run(
            ["gcc", "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror",
             "-o", str(exe), str(EXAMPLES / f"{name}.c"), "-lzmq", "-lm"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        out[name] = exe
    return out


def _same(c_value, py_value) -> bool:
    if isinstance(py_value, list):
        return len(c_value) == len(py_value) and all(map(_same, c_value, py_value))
    if py_value is None or (isinstance(py_value, float) and math.isnan(py_value)):
        return c_value is None
    return (
        c_value == py_value
        and type(c_value) is type(py_value)
        or (isinstance(py_value, float) and float(c_value) == py_value)
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_c_publisher_and_subscriber_against_a_real_engine(tmp_path):
    exe = _build(tmp_path)
    config = tmp_path / "engine.toml"
    config.write_text(
        "[[dispatch.chains]]\nunderlying = 0\nexpiries = [0.1, 0.5]\nstrike_count = 3\n"
        "[dispatch.correlation]\nsymbols = [0, 1, 2, 3]\nwindow = 8\n"
        "sample_interval_s = 0.02\nevery_samples = 2\n"
    )
    err_path = tmp_path / "serve.err"
    ctx = zmq.Context()
    stats_sub = ctx.socket(zmq.SUB)
    stats_sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    stats_sub.setsockopt(zmq.LINGER, 0)
    with open(err_path, "w") as err:
        serve = subprocess.Popen(
            [sys.executable, "-m", "tickpath", "serve", "--ingest", ANY_PORT, "--publish", ANY_PORT,
             "--symbols", "4", "--config", str(config), "--fpga-emulate",
             "--set", "publish.stats_interval_s=0.2", "--set", 'publish.mode="both"'],
            stderr=err,
        )  # fmt: skip
    subscriber = None
    try:
        bound = bound_endpoints(err_path, serve)  # ports the engine bound (port 0)
        ingest, results = bound["ingest"][0], bound["publish"]
        stats_sub.connect(results)
        stats: dict = {}
        deadline = time.monotonic() + DEADLINE_S
        while not stats:  # the engine is up: its subscriber can connect and stay
            assert serve.poll() is None and time.monotonic() < deadline, err_path.read_text()
            if stats_sub.poll(200):
                stats = msgspec.json.decode(stats_sub.recv_multipart()[1])
        # its output goes to a file: a pipe nobody reads until the end would fill and block it
        out_file = open(tmp_path / "subscriber.out", "w")  # noqa: SIM115
        subscriber = subprocess.Popen(
            [str(exe["subscriber"]), results, "100000000", "120000"],
            stdout=out_file, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        published = subprocess.run(
            [str(exe["publisher"]), ingest, str(N_RECORDS), "5", "2000"],
            capture_output=True, text=True, timeout=DEADLINE_S,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert int(published.stdout) == N_RECORDS
        while stats.get("records_received", 0) < N_RECORDS or not stats.get("dispatch"):
            assert time.monotonic() < deadline, stats
            if stats_sub.poll(200):
                stats = msgspec.json.decode(stats_sub.recv_multipart()[1])

        # every frame is processed; wait until the subscriber has decoded every result kind
        # (what is checked below; results still in flight after that are not needed)
        def every_kind() -> bool:
            text = (tmp_path / "subscriber.out").read_text()
            return all(f'"kind":{kind},' in text for kind in s.ANALYTIC_OF_KIND)

        wait_until(every_kind, DEADLINE_S, lambda: "the C subscriber's output lacks a kind")
        subscriber.terminate()  # it finishes the result in hand and exits 0
        _, err = subscriber.communicate(timeout=DEADLINE_S)
        out_file.close()
        assert subscriber.returncode == 0, err
        out = (tmp_path / "subscriber.out").read_text()
    finally:
        if subscriber is not None and subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
        stats_sub.close()
        ctx.term()
        serve.terminate()
        serve.wait(timeout=60)
    # the engine got every record the C publisher sent, from its first: nothing lost at the join
    assert stats["records_accepted"] == N_RECORDS and stats["gaps"] == 0
    assert stats["streams"]["5"]["next_seq"] == N_RECORDS
    kinds: dict[int, int] = {}
    compared = batched = 0
    for line in out.split("\n")[:-1]:
        item = json.loads(line)
        frame = bytes.fromhex(item["hex"])
        header, records = codec.decode_frame(frame)
        kind = int(header["kind"])
        assert item["kind"] == kind and item["seq"] == int(header["seq"])
        # per-symbol topics ("quote.3") and batched ones ("batch.quote", count > 1): same framing
        prefix, _, rest = item["topic"].partition(".")
        assert (rest if prefix == "batch" else prefix) == s.ANALYTIC_OF_KIND[kind]
        batched += prefix == "batch"
        expected = record_to_dict(records[item["index"]])
        assert set(item["fields"]) == set(expected), kind
        for name, value in expected.items():
            assert _same(item["fields"][name], value), (kind, name, item["fields"][name], value)
            compared += 1
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == set(s.ANALYTIC_OF_KIND), (kinds, err)  # every result kind was decoded
    print(f"{compared} field comparisons, {sum(kinds.values())} records by kind {kinds}")
    assert compared > 10_000
    assert batched > 0  # the C subscriber decoded batched messages too (publish.mode "both")
    # and the one-sided quotes the publisher sent came back with imbalance NaN (README)
    assert any(
        item["fields"]["imbalance"] is None
        for item in map(json.loads, out.split("\n")[:-1])
        if item["kind"] == s.KIND_RESULT_QUOTE
    )
