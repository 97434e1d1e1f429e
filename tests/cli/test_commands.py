"""The ``tickpath`` commands as a user runs them: separate processes over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tickpath.engine.service.demo import free_port

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
    port = free_port()
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind(f"tcp://127.0.0.1:{port}")
    try:
        result = run("serve", "--ingest", f"tcp://127.0.0.1:{port}", "--publish",
                     f"tcp://127.0.0.1:{free_port()}", "--log-level", "ERROR")  # fmt: skip
    finally:
        sock.close(linger=0)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_feed_serve_watch_end_to_end(tmp_path):
    ingest = f"tcp://127.0.0.1:{free_port()}"
    results = f"tcp://127.0.0.1:{free_port()}"
    serve = subprocess.Popen(
        TICKPATH + ["serve", "--ingest", ingest, "--publish", results, "--symbols", "4",
                    "--log-level", "WARNING"],
    )  # fmt: skip
    watch_out = tmp_path / "watch.jsonl"
    try:
        time.sleep(0.5)
        with open(watch_out, "w") as out:
            watch = subprocess.Popen(
                TICKPATH + ["watch", "--endpoint", results, "--json", "--count", "400",
                            "--timeout", "30"],
                stdout=out,
            )  # fmt: skip
            # the engine compiles or loads its kernels before it binds: wait for the stats
            stats_seen = run("watch", "--endpoint", results, "--topic", "stats", "--count", "1",
                             "--timeout", "60", "--json")  # fmt: skip
            assert stats_seen.returncode == 0 and '"stats"' in stats_seen.stdout
            feed = run("feed", "--endpoint", ingest, "--symbols", "4", "--rate", "20000",
                       "--batch", "8", "--duration", "1.5", "--seed", "7", "--json")  # fmt: skip
            assert feed.returncode == 0, feed.stderr
            watch.wait(timeout=60)
        lines = [json.loads(line) for line in watch_out.read_text().splitlines()]
        assert len(lines) == 400
        analytics = {line["analytic"] for line in lines if line["topic"] != "stats"}
        assert {"quote", "trade", "book"} <= analytics
        for line in lines:
            if line["topic"] == "stats":
                continue
            assert line["topic"] == f"{line['analytic']}.{line['symbol']}"
            assert 0 <= line["symbol"] < 4
        time.sleep(1.5)  # let the engine publish stats covering the whole feed
        final = run("watch", "--endpoint", results, "--topic", "stats", "--count", "1",
                    "--timeout", "10", "--json")  # fmt: skip
        stats = json.loads(final.stdout.splitlines()[-1])
        report = json.loads(feed.stdout.strip().splitlines()[-1])
        assert stats["gaps"] == 0 and stats["records_lost"] == 0
        assert stats["records_accepted"] == report["records"]
        assert stats["frames_rejected"] == 0 and stats["records_rejected"] == 0
    finally:
        serve.terminate()
        serve.wait(timeout=20)
    assert serve.returncode == 0


def test_demo_runs_and_shows_live_analytics():
    result = run("demo", "--duration", "3", "--symbols", "3", timeout=120)
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
