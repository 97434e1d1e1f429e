"""The [dispatch] config section: defaults, strictness, validation, symbol checks."""

from __future__ import annotations

import pytest

from tickpath.engine.config import ConfigError, load_config, parse_setting
from tickpath.engine.dispatch.config import chain_option_symbols, check_against_engine


def test_defaults_work_on_a_laptop():
    d = load_config().dispatch
    assert d.enabled and d.routes.chain == "auto" and d.chains == ()
    assert d.lanes.stream.capacity == 1024 and d.lanes.requests.expired == "drop"
    assert d.calibration.mode == "startup" and d.requests.endpoint is None


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("dispatch.lanes.stream.max_wait_ms=0.5", "dispatch.lanes.stream.max_wait_ms", 0.5),
        ("publish.sndhwm = 1000", "publish.sndhwm", 1000),
        ("log_level=DEBUG", "log_level", "DEBUG"),
        ('publish.endpoint="tcp://*:7"', "publish.endpoint", "tcp://*:7"),
        (
            'ingest.endpoints=["tcp://a:1", "tcp://b:2"]',
            "ingest.endpoints",
            ["tcp://a:1", "tcp://b:2"],
        ),
        ("dispatch.enabled=false", "dispatch.enabled", False),
    ],
)
def test_settings_are_read_as_toml_values(text, key, value):
    assert parse_setting(text) == (key, value)
    config = load_config(None, dict([parse_setting(text)]))
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    assert node == (tuple(value) if isinstance(value, list) else value)


@pytest.mark.parametrize("text", ["novalue", "=3", "key=", "a..b=1", "bad key=1", "9x=1"])
def test_malformed_settings_get_one_line_errors(text):
    with pytest.raises(ValueError, match="KEY=VALUE|not a config key") as info:
        parse_setting(text)
    assert "\n" not in str(info.value)


def test_gil_switch_interval_is_set_while_the_workers_run_and_restored_after():
    import sys

    from tests.dispatch.helpers import Rig

    before = sys.getswitchinterval()
    try:
        rig = Rig(gil_switch_interval_us=150.0)
        assert sys.getswitchinterval() == pytest.approx(150e-6, abs=2e-6)  # kept in whole us
        rig.dispatcher.close()
        # the interpreter's own interval is back once the dispatcher stops
        assert sys.getswitchinterval() == before
        rig.dispatcher.close()  # closing twice restores nothing twice
        assert sys.getswitchinterval() == before
        rig = Rig(gil_switch_interval_us=0.0)  # 0: the interpreter's setting stays
        assert sys.getswitchinterval() == before
        rig.dispatcher.close()
        assert sys.getswitchinterval() == before
    finally:
        sys.setswitchinterval(before)
    assert load_config().dispatch.gil_switch_interval_us == 200.0
    with pytest.raises(ConfigError, match="gil_switch_interval_us"):
        load_config(None, {"dispatch.gil_switch_interval_us": 0.5})


def test_nested_dispatchers_restore_the_switch_interval_in_turn():
    """A dispatcher started and stopped inside another one's life gives back the first
    one's interval; the first one, when it stops, the interpreter's."""
    import sys

    from tests.dispatch.helpers import Rig

    before = sys.getswitchinterval()
    first = Rig(gil_switch_interval_us=300.0)
    second = Rig(gil_switch_interval_us=150.0)
    try:
        assert sys.getswitchinterval() == pytest.approx(150e-6, abs=2e-6)
        second.dispatcher.close()
        assert sys.getswitchinterval() == pytest.approx(300e-6, abs=2e-6)
    finally:
        second.close()
        first.close()
    assert sys.getswitchinterval() == before


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
