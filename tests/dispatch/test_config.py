"""The [dispatch] config section: defaults, strictness, validation, symbol checks."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, load_config
from engine.dispatch.config import chain_option_symbols, check_against_engine


def test_defaults_work_on_a_laptop():
    d = load_config().dispatch
    assert d.enabled and d.routes.chain == "auto" and d.chains == ()
    assert d.lanes.stream.capacity == 1024 and d.lanes.requests.expired == "drop"
    assert d.calibration.mode == "startup" and d.requests.endpoint is None


def test_toml_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        """
[analytics]
n_symbols = 200
[dispatch.routes]
chain = "cuda"
[dispatch.lanes.requests]
capacity = 8
[[dispatch.chains]]
underlying = 5
expiries = [0.25]
strikes = [90.0, 100.0]
option_symbol_base = 100
[[dispatch.chains]]
underlying = 6
options = [{strike = 100.0, expiry = 0.5, call = true, symbol = 150}]
[dispatch.correlation]
symbols = [1, 2, 3]
"""
    )
    config = load_config(path)
    d = config.dispatch
    assert d.routes.chain == "cuda" and d.lanes.requests.capacity == 8
    assert d.lanes.requests.deadline_ms == 30_000.0  # request-lane defaults kept
    assert chain_option_symbols(d.chains[0]) == [100, 101, 102, 103]
    assert chain_option_symbols(d.chains[1]) == [150]
    check_against_engine(d, config.analytics.n_symbols)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dispatch.bogus": 1}, "unknown field"),
        ({"dispatch.lanes": {"stream": {"capacity": 0}}}, "capacity"),
        ({"dispatch.lanes": {"stream": {"expired": "maybe"}}}, "expired"),
        ({"dispatch.routes": {"chain": "gpu; rm -rf"}}, "backend name"),
        ({"dispatch.chains": [{"underlying": 1, "vol": -0.2}]}, "vol must be > 0"),
        ({"dispatch.chains": [{"underlying": 1, "expiries": []}]}, "expiries"),
        ({"dispatch.chains": [{"underlying": 1, "strike_count": 5, "strike_step": 0.6}]},
         "strike_step"),
        ({"dispatch.chains": [{"underlying": 1}, {"underlying": 1}]}, "one chain per underlying"),
        ({"dispatch.chains": [{"underlying": 1, "options": [{"strike": 1.0, "expiry": 1.0}]}]},
         "call"),
        ({"dispatch.correlation": {"symbols": [1]}}, "at least two"),
        ({"dispatch.correlation": {"symbols": [1, 1]}}, "distinct"),
        ({"dispatch.calibration": {"mode": "file"}}, "needs dispatch.calibration.file"),
        ({"dispatch.requests": {"endpoint": "nowhere"}}, "not a ZeroMQ endpoint"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_symbols_are_checked_against_the_engine():
    config = load_config(None, {
        "analytics.n_symbols": 50,
        "dispatch.chains": [{"underlying": 1, "strikes": [1.0, 2.0], "option_symbol_base": 48}],
    })  # fmt: skip
    with pytest.raises(ValueError, match="symbol 50 >= analytics.n_symbols"):
        check_against_engine(config.dispatch, 50)
    clash = load_config(None, {
        "dispatch.chains": [{"underlying": 1, "strikes": [1.0], "option_symbol_base": 1}],
    })  # fmt: skip
    with pytest.raises(ValueError, match="both"):
        check_against_engine(clash.dispatch, 1024)
