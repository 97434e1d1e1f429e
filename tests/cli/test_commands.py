"""The ``tickpath`` commands as a user runs them: separate processes over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.serving import ANY_PORT, bound_endpoints
from tests.waiting import DEADLINE_S, wait_until

TICKPATH = [sys.executable, "-m", "tickpath"]


def run(*args, timeout=60, **kwargs):
    return subprocess.run(
        TICKPATH + list(args), capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.mark.parametrize("command", ["serve", "feed", "watch", "demo", "import-bitstamp"])
def test_every_command_answers_help(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: tickpath " + command in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--symbols", "zero"],
        ["serve", "--no-such-flag"],
        ["serve", "--set", "no-equals-sign"],
        ["serve", "--set", "=1"],
        ["serve", "--set", "bad key=1"],
        ["serve", "--set", "publish.sndhwm=-1"],
        ["serve", "--set", "dispatch.no_such_key=1"],
        ["serve", "--set", "dispatch.gil_switch_interval_us=-5"],
        ["feed", "--endpoint", "tcp://127.0.0.1:1", "--rate", "-5"],
        ["feed", "--endpoint", "tcp://127.0.0.1:1", "--batch", "0"],
        ["watch"],
        ["demo", "--duration", "-1"],
        ["no-such-command"],
    ],
)
def test_bad_flags_get_one_line_error(args):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text, expect",
    [
        ("[analytics]\nn_symbols = -3\n", "n_symbols"),
        ("[analytics]\nema_spans = [1, 2, 3, 4, 5]\n", "ema_spans"),
        ("[ingest]\nno_such_key = 1\n", "no_such_key"),
        ("[publish]\nendpoint = 7\n", "endpoint"),
        ("this is not toml", "TOML"),
    ],
)
def test_bad_config_gets_one_line_error(tmp_path, text, expect):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run("serve", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.stderr


def test_endpoint_in_use_is_one_line_error():
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(ANY_PORT)  # a port the OS picked, held by this socket
    taken = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        result = run("serve", "--ingest", taken, "--publish", ANY_PORT, "--log-level", "ERROR")
    finally:
        sock.close(linger=0)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _stats_until(endpoint, predicate, timeout=DEADLINE_S):
    """The first stats message from `endpoint` for which `predicate(stats)` holds."""
    import zmq

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.connect(endpoint)
    seen = []
    try:

        def matching():
            if sub.poll(100):
                seen[:] = [json.loads(sub.recv_multipart()[1])]
                return predicate(seen[0]) and seen[0]
            return None

        return wait_until(matching, timeout, lambda: f"stats to match; last: {seen}")
    finally:
        sub.close()


def test_feed_serve_watch_end_to_end(tmp_path):
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        serve = subprocess.Popen(
            TICKPATH + ["serve", "--ingest", ANY_PORT, "--publish", ANY_PORT, "--symbols", "4",
                        "--log-level", "INFO"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    watch_out = tmp_path / "watch.jsonl"
    try:
        # the engine compiles or loads its kernels before it binds and logs its endpoints
        bound = bound_endpoints(log_path, serve)
        ingest, results = bound["ingest"][0], bound["publish"]
        with open(watch_out, "w") as out:
            watch = subprocess.Popen(
                TICKPATH + ["watch", "--endpoint", results, "--json", "--count", "400",
                            "--timeout", "120"],
                stdout=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},  # a line as it comes
            )  # fmt: skip
            # the watcher has joined once it prints: it counts the stats messages too
            wait_until(lambda: watch_out.stat().st_size > 0, what="the watcher's first line")
            feed = run("feed", "--endpoint", ingest, "--symbols", "4", "--rate", "20000",
                       "--batch", "8", "--duration", "1.5", "--seed", "7", "--json",
                       timeout=DEADLINE_S)  # fmt: skip
            assert feed.returncode == 0, feed.stderr
            watch.wait(timeout=DEADLINE_S)
        lines = [json.loads(line) for line in watch_out.read_text().splitlines()]
        assert len(lines) == 400
        analytics = {line["analytic"] for line in lines if line["topic"] != "stats"}
        assert {"quote", "trade", "book"} <= analytics
        for line in lines:
            if line["topic"] == "stats":
                continue
            assert line["topic"] == f"{line['analytic']}.{line['symbol']}"
            assert 0 <= line["symbol"] < 4
        report = json.loads(feed.stdout.strip().splitlines()[-1])
        # the engine's stats once they cover the whole feed
        stats = _stats_until(results, lambda s: s["records_received"] >= report["records"])
        assert stats["gaps"] == 0 and stats["records_lost"] == 0
        assert stats["records_accepted"] == report["records"]
        assert stats["frames_rejected"] == 0 and stats["records_rejected"] == 0
    finally:
        serve.terminate()
        serve.wait(timeout=DEADLINE_S)
    assert serve.returncode == 0


def test_demo_runs_and_shows_live_analytics():
    result = run("demo", "--duration", "3", "--symbols", "3", timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr
    assert "tickpath demo" in result.stdout
    assert "records" in result.stdout and "0 gaps" in result.stdout


def test_readme_second_command_is_what_ci_runs():
    """.ci/run runs the README's second command verbatim (so the README's promise is CI's)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    ci_command = (repo / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (repo / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and commands[1] == ci_command
    assert commands[0].endswith(".venv/bin/tickpath demo")
