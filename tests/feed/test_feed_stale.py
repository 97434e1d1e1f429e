"""The Bitstamp importer's stale-order policy and crossing figure, on rows made by hand."""

from __future__ import annotations

import pytest

from tickpath.engine.feed.bitstamp import convert
from tickpath.engine.feed.recording import iter_frames
from tickpath.engine.wire import schema as s


def _order(oid, ms, price, volume, action, direction):
    return [str(oid), "0", str(ms), str(price), str(volume), action, direction]


def _trade(tid, ms, price, side="buy"):
    return [str(tid), "0", str(ms), str(price), "0.1", "0", "0", side]


ORDERS = [
    _order(1, 1, 99.0, 1, "created", "bid"),
    _order(2, 1, 101.0, 1, "created", "ask"),
    _order(9, 1, 95.0, 1, "created", "ask"),  # stale: every trade prints through it
    _order(3, 5, 100.5, 1, "created", "ask"),
    _order(3, 6, 0, 0, "deleted", "ask"),
]
TRADES = [_trade(t, 2 + t, 100.0) for t in range(4)]  # 4 trades at 100.0 > 95.0


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_an_order_printed_through_is_stale(tmp_path, policy):
    out = tmp_path / "x.tkp"
    report = convert(ORDERS, TRADES, out, stale_policy=policy, stale_after=3)
    assert report.stale_orders == {"9": 4}
    ids = {
        int(r["order_id"])
        for f in iter_frames(out)
        if int(f.header["kind"]) == s.KIND_ORDER
        for r in f.records
    }
    # crossed (bid 99 >= ask 95) after 3 of the 5 order events: from order 9's add on
    assert report.crossed_share_with_stale == 0.6
    if policy == "drop":
        assert ids == {1, 2, 3}
        assert report.dropped == {"stale: printed through by trades": 1}
        assert report.adds == 3 and report.crossed_share == 0.0
    else:
        assert ids == {1, 2, 3, 9} and report.dropped == {}
        assert report.crossed_share == 0.6


def test_below_the_threshold_an_order_is_not_stale(tmp_path):
    report = convert(ORDERS, TRADES[:2], tmp_path / "x.tkp", stale_after=3)
    assert report.stale_orders == {} and report.crossed_share == 0.6
    with pytest.raises(ValueError, match="stale policy"):
        convert(ORDERS, TRADES, tmp_path / "y.tkp", stale_policy="flag")
