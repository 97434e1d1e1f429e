"""serve --metrics: scraped over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.serving import ANY_PORT, bound_endpoints
from tickpath.engine.feed.publisher import run_feed
from tickpath.engine.service.metrics import parse_address

prometheus_parser = pytest.importorskip("prometheus_client.parser")

TICKPATH = [sys.executable, "-m", "tickpath"]
DEADLINE_S = 120.0


def _scrape(url: str) -> dict:
    """{(sample name, sorted labels): value} of one scrape."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_scrape_and_parse(tmp_path):
    err_path = tmp_path / "serve.err"
    with open(err_path, "w") as err:
        serve = subprocess.Popen(
            TICKPATH + ["serve", "--ingest", ANY_PORT, "--publish", ANY_PORT, "--symbols", "4",
                        "--metrics", "127.0.0.1:0", "--set", "publish.stats_interval_s=0.2"],
            stderr=err,
        )  # fmt: skip
    try:
        # every port is bound by the engine (port 0) and read back from its log
        ingest = bound_endpoints(err_path, serve)["ingest"][0]
        url = re.search(r"metrics on (http://\S+/metrics)", err_path.read_text())[1]
        report = run_feed(ingest, symbols=4, rate=20_000, batch=8, duration=None,
                          max_records=4_000, stream_id=3, join_timeout=DEADLINE_S)  # fmt: skip
        deadline = time.monotonic() + DEADLINE_S
        extra = runs = 0  # records (streams 4, 5, ...) sent while nothing was sampled
        while True:
            assert serve.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, err_path.read_text()
            try:
                m = _scrape(url)
            except OSError:
                m = {}
            sampled = m.get(("tickpath_tick_to_result_seconds_count", (("analytic", "quote"),)), 0)
            if m.get(("tickpath_records_accepted_total", ()), 0) >= report.records + extra:
                if sampled:
                    break
                # the sampler's subscription can join after the whole first feed was out
                # (a slow joiner on a busy machine): more quotes until one is sampled
                runs += 1
                extra += run_feed(ingest, symbols=4, rate=20_000, batch=8, duration=None,
                                  max_records=200, stream_id=3 + runs,
                                  join_timeout=DEADLINE_S).records  # fmt: skip
            time.sleep(0.1)
        assert m[("tickpath_up", ())] == 1
        assert m[("tickpath_state", (("state", "running"),))] == 1
        assert m[("tickpath_records_received_total", ())] == report.records + extra
        assert m[("tickpath_rejected_total", (("reason", "bad_magic"),))] == 0
        assert m[("tickpath_stream_gaps_total", (("stream", "3"),))] == 0
        assert m[("tickpath_stream_next_seq", (("stream", "3"),))] == report.next_seq
        processed = sum(v for (name, _), v in m.items() if name == "tickpath_processed_total")
        assert processed == report.records + extra  # each record: exactly one analytic
        topics = {labels: v for (name, labels), v in m.items() if name == "tickpath_topic_seq"}
        assert topics and all(v > 0 for v in topics.values())
        # the histograms: bucket counts are cumulative and end at the count
        for stage in ("engine", "tick_to_result"):
            count = m[(f"tickpath_{stage}_seconds_count", (("analytic", "quote"),))]
            inf = m[(f"tickpath_{stage}_seconds_bucket", (("analytic", "quote"), ("le", "+Inf")))]
            assert count > 0 and inf == count
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    assert serve.returncode == 0, err_path.read_text()


@pytest.mark.parametrize("bad", ["9108", "host:", ":9108", "host:99999", "host:port"])
def test_bad_metrics_address_is_one_line(bad):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(bad)
    result = subprocess.run(
        TICKPATH + ["serve", "--metrics", bad], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "HOST:PORT" in result.stderr
