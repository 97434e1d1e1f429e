"""MilliPath start-up: backends probed, crossovers measured (or loaded), the routing table
logged, the FPGA overlay recognised, and the config's symbols checked."""

from __future__ import annotations

import functools
import logging
import types

import pytest
import zmq

from tests.dispatch.test_calibration import Timed, VirtualClock
from tickpath.engine.config import ConfigError, load_config
from tickpath.engine.dispatch import calibration
from tickpath.engine.dispatch.backends import default_registry
from tickpath.engine.dispatch.milli import MilliPath


def fake_engine(config, extensions=()):
    return types.SimpleNamespace(config=config, context=zmq.Context.instance(),
                                 extensions=list(extensions))  # fmt: skip


def test_crossovers_are_measured_at_start_up_when_a_gpu_is_usable(caplog, monkeypatch):
    config = load_config(None, {"dispatch": {
        "gpu_preference": ["fakegpu"],
        "calibration": {"sizes": [2000, 20000], "repeats": 1},
    }})  # fmt: skip
    registry = default_registry()
    # the start-up calibration times on a virtual clock that only the backends' declared
    # costs advance: the crossover found does not depend on the machine's load
    clock = VirtualClock()
    monkeypatch.setattr(calibration, "measure", functools.partial(calibration.measure, clock=clock))
    # a "cpu" 400 ns/option slower, a "gpu" 2 ms per call slower: N* about 5,000
    registry.register(Timed("cpu", 0.0, 400e-9, clock), replace=True)
    registry.register(Timed("fakegpu", 2e-3, 0.0, clock))  # chains and IVs; the others fail
    milli = MilliPath(config, registry)
    with caplog.at_level(logging.INFO, logger="tickpath.dispatch"):
        milli.on_start(fake_engine(config))
    # the chain job, as the router sends it: on these two, implied vols of the quoted half
    # then Black-Scholes, so 600 ns/contract against two 2 ms calls: N* about 7,000
    c = milli.routing.crossovers[("chain", "fakegpu")]
    assert c.source == "measured" and c.n_star is not None and c.n_star > 1
    assert 1_000 < c.n_star < 25_000
    assert ("black_scholes", "fakegpu") not in milli.routing.crossovers  # no analytic uses it
    assert milli.routing.crossovers[("covariance", "fakegpu")].n_star is None  # it failed
    assert "fakegpu calibration failed: cpu does not run covariance" in caplog.text
    text = caplog.text
    assert "routing table:" in text and "GPU crossovers measured" in text
    assert f"fakegpu N*={c.n_star:,} (measured)" in text
    milli.close()


def test_a_calibration_file_is_used_instead_of_measuring(tmp_path, caplog):
    path = tmp_path / "cal.json"
    calibration.save(path, {
        (k, "fakegpu"): calibration.Crossover(k, "fakegpu", 777, "measured")
        for k in calibration.CALIBRATED_KERNELS
    })  # fmt: skip
    config = load_config(None, {"dispatch": {
        "gpu_preference": ["fakegpu"], "calibration": {"file": str(path)},
    }})  # fmt: skip
    registry = default_registry()
    gpu = Timed("fakegpu", 0.0, 0.0)
    registry.register(gpu)
    milli = MilliPath(config, registry)
    with caplog.at_level(logging.INFO, logger="tickpath.dispatch"):
        milli.on_start(fake_engine(config))
    assert "GPU crossovers measured" not in caplog.text
    assert milli.routing.choose("chain", 777).backend == "fakegpu"
    assert milli.routing.choose("chain", 776).backend == "cpu"
    milli.close()


def test_without_a_gpu_everything_is_cpu_and_the_table_says_why(caplog):
    config = load_config()
    milli = MilliPath(config)
    with caplog.at_level(logging.INFO, logger="tickpath.dispatch"):
        milli.on_start(fake_engine(config))
    table = milli.routing.as_dict()
    for analytic in ("chain", "corr", "iv_surface", "var"):
        if table[analytic]["route"] != "cpu":
            pytest.skip("a GPU is usable in this process")
        assert table[analytic]["why"].startswith("no GPU crossover")
    assert "milli path idle" in caplog.text  # nothing configured: no workers, no sockets
    assert milli.sockets() == [] and milli.dispatcher is None


def test_calibration_off_keeps_auto_routes_on_the_cpu():
    config = load_config(None, {"dispatch": {"gpu_preference": ["fakegpu"],
                                             "calibration": {"mode": "off"}}})  # fmt: skip
    registry = default_registry()
    registry.register(Timed("fakegpu", 0.0, 0.0))
    milli = MilliPath(config, registry)
    milli.on_start(fake_engine(config))
    assert milli.routing.choose("chain", 10**9).backend == "cpu"
    assert "calibration off" in milli.routing.static_route("chain")[1]


def test_the_fpga_extension_takes_the_micro_route():
    config = load_config()
    milli = MilliPath(config)
    fpga = types.SimpleNamespace(name="fpga", description="golden-model emulation")
    milli.on_start(fake_engine(config, [fpga, milli]))
    route = milli.routing.micro_route()
    assert route.backend == "fpga" and "golden-model emulation" in route.why


def test_symbols_beyond_the_engine_are_refused():
    config = load_config(None, {"analytics.n_symbols": 8,
                                "dispatch.chains": [{"underlying": 9}]})  # fmt: skip
    with pytest.raises(ConfigError, match="underlying of chain 9 symbol 9 >= analytics.n_symbols"):
        MilliPath(config)


def test_an_unknown_named_route_is_refused_at_start():
    config = load_config(None, {"dispatch.routes": {"var": "tpu"}})
    with pytest.raises(ConfigError, match="no such backend"):
        MilliPath(config).on_start(fake_engine(config))
