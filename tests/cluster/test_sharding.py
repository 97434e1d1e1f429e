"""The shard map, the sharding publisher and the first-copy-wins subscriber side.

The publisher is tested against real SUB sockets standing in for replica ingests
(bound on port 0, listed in a discovery file as the scheduler writes it).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq
from standin_master import wait_for

from tickpath.engine.cluster.shards import ShardMap, ShardMapError, parse_shard
from tickpath.engine.feed.join import JoinTimeout
from tickpath.engine.feed.sharding import ShardingPublisher
from tickpath.engine.service.dedup import ResultDeduplicator
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def test_modulo_map_and_map_file(tmp_path):
    m = ShardMap.modulo(4)
    assert m.shard_of(np.array([0, 1, 5, 7, 2**32 - 1], np.uint32)).tolist() == [0, 1, 1, 3, 3]
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"shards": 3, "symbols": {"5": 0, "7": 0, "100": 2}}))
    f = ShardMap.from_file(path)
    assert f.shard_of(np.array([5, 7, 100, 4, 200], np.uint32)).tolist() == [0, 0, 2, 1, 2]
    path.write_text(json.dumps(f.to_json()))
    assert ShardMap.from_file(path) == f


@pytest.mark.parametrize(
    "doc, why",
    [
        ({"shards": 0}, "shards must be in"),
        ({"shards": 2, "symbols": {"3": 2}}, "shard 2 is not in 0..1"),
        ({"shards": 2, "symbols": {"x": 1}}, "must be integers"),
        ({"symbols": {}}, "integer 'shards'"),
        ([1, 2], "integer 'shards'"),
    ],
)
def test_bad_map_files_say_why(tmp_path, doc, why):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ShardMapError, match=why):
        ShardMap.from_file(path)


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/4", "a/b", "3", "0/0"):
        with pytest.raises(ShardMapError):
            parse_shard(bad)


class Replicas:
    """SUB sockets bound on port 0, one per (shard, copy), and the discovery file naming them."""

    def __init__(self, ctx, path, shards, copies):
        self.ctx, self.path, self.shards = ctx, path, shards
        self.socks = {}
        for shard in range(shards):
            for copy in range(copies):
                self.add(shard, copy)
        self.write()

    def add(self, shard, copy):
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.bind("tcp://127.0.0.1:*")
        self.socks[(shard, copy)] = sub

    def write(self):
        endpoints = [
            {"shard": shard, "shards": self.shards, "slot": copy * self.shards + shard,
             "ingest": sub.getsockopt_string(zmq.LAST_ENDPOINT), "publish": "tcp://unused:1"}
            for (shard, copy), sub in self.socks.items()
        ]  # fmt: skip
        self.path.write_text(json.dumps({"shards": self.shards, "endpoints": endpoints}))

    def pump(self):
        """Let bound SUBs attach connecting peers (they do so only inside socket calls)."""
        for sub in self.socks.values():
            sub.poll(0)

    def frames(self, key, timeout_s=60):
        out = []
        sub = self.socks[key]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sub.poll(200):
                out.append(codec.decode_frame(sub.recv()))
            elif out:
                break
        return out


def listening(pub, replicas, shard=None, n=1):
    """Condition: the publisher counts ``n`` replicas subscribed (on ``shard``, or every shard)."""

    def check():
        replicas.pump()
        pub.refresh()
        pub._drain_membership()
        shards = range(len(pub.stats)) if shard is None else [shard]
        return all(pub.stats[i].listeners == n for i in shards)

    return check


def quotes(symbols):
    q = np.zeros(len(symbols), s.QUOTE)
    q["symbol"] = symbols
    q["ts_ns"] = np.arange(len(symbols))
    return q


def test_each_record_goes_to_every_replica_of_its_shard_with_one_sequence_per_shard(tmp_path):
    ctx = zmq.Context()
    replicas = Replicas(ctx, tmp_path / "endpoints.json", shards=2, copies=2)
    try:
        with ShardingPublisher(str(replicas.path), stream_id=3, context=ctx) as pub:
            wait_for(listening(pub, replicas, n=2), 60, "both replicas of both shards subscribed")
            pub.send(s.KIND_QUOTE, quotes([0, 1, 2, 3, 4, 5, 7]))
            pub.send(s.KIND_QUOTE, quotes([9, 8]))
            report = pub.report()
        for shard, symbols in ((0, [0, 2, 4, 8]), (1, [1, 3, 5, 7, 9])):
            for copy in range(2):
                frames = replicas.frames((shard, copy))
                got = np.concatenate([records["symbol"] for _, records in frames]).tolist()
                assert got == symbols, (shard, copy)
                seqs = [int(header["seq"]) for header, _ in frames]
                counts = [int(header["count"]) for header, _ in frames]
                assert seqs == [0, counts[0]] and all(h["stream_id"] == 3 for h, _ in frames)
        assert [sh["records"] for sh in report["shards"]] == [4, 5]
        assert [sh["undelivered"] for sh in report["shards"]] == [0, 0]
    finally:
        for sub in replicas.socks.values():
            sub.close()
        ctx.term()


def test_records_of_a_shard_without_replicas_are_counted_and_discovery_changes_followed(tmp_path):
    ctx = zmq.Context()
    replicas = Replicas(ctx, tmp_path / "endpoints.json", shards=2, copies=1)
    try:
        with ShardingPublisher(str(replicas.path), context=ctx, refresh_s=0.05) as pub:
            wait_for(listening(pub, replicas), 60, "a replica of each shard subscribed")
            replicas.socks.pop((1, 0)).close()  # shard 1's replica dies
            wait_for(listening(pub, replicas, shard=1, n=0), 60, "shard 1's replica seen leaving")
            pub.send(s.KIND_QUOTE, quotes([1, 3, 2]))
            assert pub.stats[1].undelivered == 2 and pub.stats[0].undelivered == 0
            replicas.add(1, 1)  # relaunched elsewhere: a new endpoint in discovery
            replicas.write()
            wait_for(listening(pub, replicas, shard=1), 60, "the relaunched replica joined")
            pub.send(s.KIND_QUOTE, quotes([5]))
            ((header, records),) = replicas.frames((1, 1))
            assert records["symbol"].tolist() == [5] and int(header["seq"]) == 2
    finally:
        for sub in replicas.socks.values():
            sub.close()
        ctx.term()


def test_wait_for_replicas_times_out_with_the_missing_shards(tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"shards": 2, "endpoints": []}))
    with ShardingPublisher(str(path), linger_ms=0) as pub:
        with pytest.raises(JoinTimeout, match="0, 1"):
            pub.wait_for_replicas(0.2)


def result_frame(in_stream, in_seq, symbol=1):
    rec = np.zeros(1, s.RESULT_QUOTE)
    rec["in_stream"], rec["in_seq"], rec["symbol"] = in_stream, in_seq, symbol
    return codec.encode_frame(s.KIND_RESULT_QUOTE, 0, 0, rec, 0)


def test_first_copy_wins_per_topic_and_stream():
    dedup = ResultDeduplicator()
    a = [result_frame(1, seq) for seq in (10, 11, 12)]
    assert [dedup.first_copy(b"quote.1", f) for f in a[:2]] == [True, True]
    # the twin replica lags: its copies of 10 and 11 are dropped, 12 is new
    assert [dedup.first_copy(b"quote.1", f) for f in a] == [False, False, True]
    assert dedup.first_copy(b"quote.2", a[0]) is True  # another topic
    assert dedup.first_copy(b"quote.1", result_frame(2, 10)) is True  # another input stream
    assert dedup.first_copy(b"stats", b"{}") is True
    assert dedup.counters() == {"delivered": 5, "duplicates": 2, "passed": 1, "evicted": 0}


def test_eviction_delivers_again_never_loses():
    dedup = ResultDeduplicator(max_keys=2)
    for topic in (b"a", b"b", b"c"):
        assert dedup.first_copy(topic, result_frame(1, 5))
    assert dedup.evicted == 1
    assert dedup.first_copy(b"a", result_frame(1, 5))  # evicted key: delivered again


def test_a_relaunched_replica_read_first_does_not_hide_its_twins_queued_results():
    """The twin's results up to the relaunched replica's snapshot are first copies even when
    the relaunched replica's later results are read before them (a high-water mark per
    topic dropped them)."""
    dedup = ResultDeduplicator()
    old, twin, relaunched = "old", "twin", "relaunched"  # three sockets
    delivered = []

    def read(source, seqs):
        delivered.extend(
            q for q in seqs if dedup.first_copy(b"quote.1", result_frame(1, q), source)
        )

    read(old, range(1, 61))  # the replica that dies at 60
    read(twin, range(1, 91))  # its twin: 1-60 are second copies
    read(relaunched, range(96, 101))  # starts from the twin's state at 95, read first
    read(twin, range(91, 101))  # the twin's queue: 91-95 are first copies, 96-100 second
    read(relaunched, range(101, 111))
    read(twin, range(101, 111))
    assert delivered == [*range(1, 91), *range(96, 101), *range(91, 96), *range(101, 111)]
    assert dedup.duplicates == 60 + 5 + 10


def test_a_replica_relaunched_on_the_same_socket_sends_second_copies_then_new_ones():
    dedup = ResultDeduplicator()
    got = [q for q in range(1, 11) if dedup.first_copy(b"t", result_frame(1, q), "a")]
    got += [q for q in range(1, 11) if dedup.first_copy(b"t", result_frame(1, q), "b")]
    # "a" is relaunched on its address (the same socket) from b's state at 7
    got += [q for q in range(8, 16) if dedup.first_copy(b"t", result_frame(1, q), "a")]
    assert got == list(range(1, 16))


def test_memory_per_key_stays_within_the_window_when_a_twin_dies():
    dedup = ResultDeduplicator(window=64)
    for q in range(1, 11):
        for source in ("a", "b"):
            dedup.first_copy(b"t", result_frame(1, q), source)
    for q in range(11, 5000):  # "b" died at 10: "a" alone from here
        assert dedup.first_copy(b"t", result_frame(1, q), "a")
    entry = dedup._keys[(b"t", 1)]
    assert len(entry.seen) <= 64 and len(entry.order) <= 64
    assert not dedup.first_copy(b"t", result_frame(1, 4000), "c")  # long delivered
    assert dedup.first_copy(b"t", result_frame(1, 5000), "c")


def test_tickpath_feed_discovery_sends_each_shard_its_own_stream(tmp_path):
    """``tickpath feed --discovery``: every record reaches its shard's replicas, v2 frames."""
    import subprocess
    import sys

    ctx = zmq.Context()
    replicas = Replicas(ctx, tmp_path / "endpoints.json", shards=2, copies=1)
    cmd = [
        sys.executable, "-m", "tickpath", "feed", "--discovery", str(replicas.path),
        "--symbols", "6", "--batch", "16", "--max-records", "320", "--rate", "20000",
        "--duration", "0", "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = {0: [], 1: []}
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            replicas.pump()
            for shard in (0, 1):
                sub = replicas.socks[(shard, 0)]
                while sub.poll(0):
                    got[shard].append(sub.recv())
        out, err = proc.communicate(timeout=60)
        for shard in (0, 1):  # what is still queued after the feed exited
            sub = replicas.socks[(shard, 0)]
            while sub.poll(500):
                got[shard].append(sub.recv())
    finally:
        for sub in replicas.socks.values():
            sub.close()
        ctx.term()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert [sh["records"] for sh in report["sharding"]["shards"]] == [
        len([r for f in got[i] if len(f) > s.HEADER_V2_SIZE for r in codec.decode_frame(f)[1]])
        for i in (0, 1)
    ]
    assert sum(sh["records"] for sh in report["sharding"]["shards"]) == 320
    for shard in (0, 1):
        seq = 0
        for frame in got[shard]:
            header, records = codec.decode_frame(frame)
            assert int(header["version"]) == s.VERSION_SESSION
            if len(records) == 0:
                continue  # the end-of-session header
            assert int(header["seq"]) == seq and set(records["symbol"] % 2) == {shard}
            seq += len(records)
