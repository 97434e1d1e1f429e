"""The routing table: routes per analytic, crossovers, health, the micro path, the log."""

from __future__ import annotations

import pytest

from tests.dispatch.helpers import FaultyBackend
from tickpath.engine.dispatch.backends import BackendRegistry, FpgaTickBackend, KernelBackend
from tickpath.engine.dispatch.calibration import Crossover
from tickpath.engine.dispatch.config import HealthConfig, RoutesConfig
from tickpath.engine.dispatch.routing import HealthBook, RoutingTable


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make_table(routes=None, crossovers=None, preference=("gpu1", "gpu2"), usable=True):
    registry = BackendRegistry()
    registry.register(KernelBackend("cpu"))
    for name in ("gpu1", "gpu2"):
        backend = FaultyBackend(name)
        if not usable:
            backend.probe = lambda: "no device"
        registry.register(backend)
    registry.register(FpgaTickBackend())
    clock = FakeClock()
    health = HealthBook(HealthConfig(retry_after_s=1.0, max_retry_after_s=4.0), clock)
    table = RoutingTable(
        RoutesConfig(**(routes or {})), registry, health, crossovers or {}, preference
    )
    return table, health, clock, registry


def xo(kernel, backend, n):
    return {(kernel, backend): Crossover(kernel, backend, n, "file")}


def test_auto_without_crossover_stays_on_cpu_and_says_why():
    table, *_ = make_table()
    route = table.choose("chain", 10**9)
    assert route.backend == "cpu"
    assert table.static_route("chain")[0] == "cpu"
    assert "no crossover" in table.static_route("chain")[1]


def test_auto_uses_the_gpu_at_and_above_its_crossover():
    table, *_ = make_table(crossovers=xo("chain", "gpu1", 1000))
    assert table.choose("chain", 999).backend == "cpu"
    route = table.choose("chain", 1000)
    assert route.backend == "gpu1" and "N* 1,000" in route.why
    assert table.choose("corr", 10**9).backend == "cpu"  # covariance has no crossover
    assert table.static_route("chain")[0] == "gpu1 if n >= 1,000, else cpu"


def test_preference_order_and_a_never_faster_gpu():
    crossovers = {**xo("chain", "gpu1", None), **xo("chain", "gpu2", 50)}
    table, *_ = make_table(crossovers=crossovers)
    assert table.choose("chain", 49).backend == "cpu"
    assert table.choose("chain", 50).backend == "gpu2"
    assert "gpu1 never faster" in table.static_route("chain")[1]


def test_unusable_gpu_is_never_chosen():
    table, *_ = make_table(crossovers=xo("chain", "gpu1", 1), usable=False)
    assert table.choose("chain", 10**6).backend == "cpu"
    assert "unavailable: no device" in table.static_route("chain")[1]


def test_named_route_and_the_cpu_fallback_when_unhealthy():
    table, health, clock, _ = make_table(routes={"var": "gpu2"})
    assert table.choose("var", 1).backend == "gpu2"
    assert health.failure("gpu2", "raised", "boom") == 1.0
    route = table.choose("var", 1)
    assert route.backend == "cpu" and "unhealthy" in route.why
    clock.now += 1_000_000_001
    route = table.choose("var", 1)
    assert route.backend == "gpu2" and route.retry  # the pause is over: a retry
    assert table.choose("var", 1).backend == "cpu"  # only one retry at a time
    assert health.failure("gpu2", "timeout", "slow") == 2.0  # doubled
    health.failure("gpu2", "timeout", "slow")
    assert health.failure("gpu2", "timeout", "slow") == 4.0  # capped
    assert health.success("gpu2") is True
    assert table.choose("var", 1).backend == "gpu2"
    stats = health.stats()["gpu2"]
    assert stats["failures_by_reason"] == {"raised": 1, "timeout": 3} and stats["recoveries"] == 1


def test_the_cpu_is_never_marked_unhealthy():
    _, health, _, _ = make_table()
    with pytest.raises(ValueError):
        health.failure("cpu", "raised", "x")


def test_a_job_a_backend_cannot_run_goes_to_the_cpu():
    registry = BackendRegistry()
    registry.register(KernelBackend("cpu"))
    cuda = KernelBackend("cuda")
    assert cuda.supports("portfolio_var", {"assets": 128})
    assert not cuda.supports("portfolio_var", {"assets": 129})
    assert not FpgaTickBackend().supports("black_scholes")


def test_unknown_named_route_is_refused():
    with pytest.raises(ValueError, match="no such backend"):
        make_table(routes={"chain": "tpu"})


def test_micro_route_is_fpga_only_with_an_overlay():
    table, _, _, registry = make_table()
    assert table.micro_route().backend == "cpu"
    assert "no overlay loaded" in table.micro_route().why
    registry.register(FpgaTickBackend("golden-model emulation"), replace=True)
    registry.detect()
    assert table.micro_route().backend == "fpga"
    assert "fpga + cpu" in table.describe()[1]


def test_describe_lists_backends_micro_and_every_milli_analytic():
    table, *_ = make_table(crossovers=xo("implied_vol", "gpu2", 300))
    lines = table.describe()
    assert lines[0].startswith("backends: cpu usable; gpu1 usable; gpu2 usable; fpga unavailable")
    assert "micro  tick" in lines[1] and "inline on the ingest thread" in lines[1]
    milli = {line.split()[1]: line for line in lines[2:]}
    assert set(milli) == {"chain", "corr", "iv_surface", "var"}
    assert "gpu2 if n >= 300, else cpu" in milli["iv_surface"]
    assert table.as_dict()["iv_surface"]["route"] == "gpu2 if n >= 300, else cpu"
