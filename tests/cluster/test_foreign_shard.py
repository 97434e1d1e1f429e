"""A replica serves one shard: records of other shards are refused (foreign_shard), counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tickpath.engine.config import ConfigError, load_config
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.streaming_view import CounterView


def quote_frame(symbols, seq=0):
    q = np.zeros(len(symbols), s.QUOTE)
    q["symbol"] = symbols
    q["ts_ns"] = 1_000
    q["bid_price"], q["bid_size"] = 99 * s.PRICE_SCALE, s.SIZE_SCALE
    q["ask_price"], q["ask_size"] = 101 * s.PRICE_SCALE, s.SIZE_SCALE
    return codec.encode_frame(s.KIND_QUOTE, 0, seq, q)


def processor(**ingest):
    overrides = {"analytics.n_symbols": 8, **{f"ingest.{k}": v for k, v in ingest.items()}}
    return StreamProcessor(load_config(None, overrides))


def test_unsharded_engine_takes_every_symbol():
    proc = processor()
    results = proc.feed(quote_frame([0, 1, 2, 3]))
    assert sorted(int(r["symbol"]) for _, r in results) == [0, 1, 2, 3]
    assert proc.state.counters[s.REJECT_FOREIGN_SHARD] == 0


def test_modulo_shard_refuses_and_counts_other_shards_records():
    proc = processor(shard="1/2")
    results = proc.feed(quote_frame([0, 1, 2, 3, 5]))
    assert sorted(int(r["symbol"]) for _, r in results) == [1, 3, 5]
    counters = CounterView(proc.state.counters).read()
    assert counters.rejected["foreign_shard"] == 2
    assert counters.records_accepted == 3
    stats = proc.stats(0)
    assert stats["rejected"]["foreign_shard"] == 2


def test_map_file_shard(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"shards": 2, "symbols": {"0": 1, "3": 0}}))
    proc = processor(shard="1/2", shard_map=str(path))
    results = proc.feed(quote_frame([0, 1, 2, 3]))
    assert sorted(int(r["symbol"]) for _, r in results) == [0, 1]  # 0 mapped here, 3 away
    assert proc.state.counters[s.REJECT_FOREIGN_SHARD] == 2


@pytest.mark.parametrize(
    "ingest, why",
    [
        ({"shard": "2/2"}, "0 <= I < N"),
        ({"shard": "x"}, "I/N"),
        ({"shard_map": "m.json"}, "needs ingest.shard"),
    ],
)
def test_bad_shard_settings_get_one_line_errors(ingest, why):
    with pytest.raises(ConfigError, match=why):
        processor(**ingest)
