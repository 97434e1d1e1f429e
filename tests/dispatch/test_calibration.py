"""The crossover N*: the fit, the measurement (on backends with known costs), the file."""

from __future__ import annotations

import json
import time

import pytest

from tickpath.engine.dispatch import calibration
from tickpath.engine.dispatch.backends import BATCH_KERNELS, Backend, KernelBackend


def test_crossover_of_two_lines():
    # cpu 10 us + 100 ns/item, gpu 60 us + 10 ns/item: equal at 50 us / 90 ns = 555.6
    assert calibration.crossover((10e-6, 100e-9), (60e-6, 10e-9)) == 556
    assert calibration.crossover((10e-6, 100e-9), (5e-6, 10e-9)) == 1  # always faster
    assert calibration.crossover((10e-6, 10e-9), (60e-6, 10e-9)) is None  # never
    assert calibration.crossover((10e-6, 10e-9), (60e-6, 20e-9)) is None
    assert calibration.crossover((float("nan"), 1.0), (0.0, 0.0)) is None


def test_fit_line_recovers_fixed_and_per_item():
    fixed, per = calibration.fit_line(
        [100, 1000, 10000], [1e-3 + 2e-7 * n for n in (100, 1000, 10000)]
    )
    assert fixed == pytest.approx(1e-3) and per == pytest.approx(2e-7)
    with pytest.raises(ValueError):
        calibration.fit_line([5, 5], [1.0, 2.0])


class VirtualClock:
    """Seconds that pass only when a `Timed` backend says so: exact, load-proof timings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Timed(Backend):
    """The CPU kernel plus a known cost: `fixed_s` per call and `per_item_s` per option.

    The cost is slept, or, with a `VirtualClock`, added to that clock (and nothing else
    counts: the times are exactly the declared costs).
    """

    kind = "gpu"
    capabilities = BATCH_KERNELS

    def __init__(self, name, fixed_s, per_item_s, clock=None):
        self.name = name
        self.fixed_s = fixed_s
        self.per_item_s = per_item_s
        self.clock = clock
        self._cpu = KernelBackend("cpu")

    def _spend(self, n):
        cost = self.fixed_s + self.per_item_s * n
        if self.clock is None:
            time.sleep(cost)  # the declared cost itself (a backend that is slow), not a wait
        else:
            self.clock.now += cost

    def black_scholes(self, S, *args):
        self._spend(len(S))
        return self._cpu.black_scholes(S, *args)

    def implied_vol(self, price, *args):
        self._spend(len(price))
        return self._cpu.implied_vol(price, *args)


def test_measure_finds_the_crossover_of_known_costs():
    # "cpu": 400 ns/option; "gpu": 4 ms per call: N* = 4e-3 / 4e-7 = 10,000 exactly, timed
    # on a virtual clock (a test that slept and read the wall clock flaked under load)
    clock = VirtualClock()
    cpu = Timed("slowcpu", 0.0, 400e-9, clock)
    gpu = Timed("fakegpu", 4e-3, 0.0, clock)
    c = calibration.measure("black_scholes", gpu, cpu, [2000, 20000, 40000], repeats=2, clock=clock)
    assert c.source == "measured" and c.backend == "fakegpu"
    assert c.n_star == 10_000, c
    assert c.gpu_fit == pytest.approx((4e-3, 0.0), abs=1e-12)
    assert c.cpu_fit == pytest.approx((0.0, 400e-9), abs=1e-12)


def test_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "cal.json"
    results = {
        ("black_scholes", "cuda"): calibration.Crossover("black_scholes", "cuda", 1200, "measured",
                                                         [1, 2], [1.0, 2.0], [0.5, 0.6]),
        ("covariance", "cuda"): calibration.Crossover("covariance", "cuda", None, "measured"),
    }  # fmt: skip
    calibration.save(path, results, device="H200")
    loaded = calibration.load(path)
    assert loaded[("black_scholes", "cuda")].n_star == 1200
    assert loaded[("covariance", "cuda")].n_star is None
    assert loaded[("black_scholes", "cuda")].source == "file"
    assert json.loads(path.read_text())["device"] == "H200"
    for text, match in [("{", "not JSON"), ('{"version": 9}', "version"),
                        ('{"version": 1, "kernels": {"black_scholes": {"cuda": {"n_star": -3}}}}',
                         "positive integer")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            calibration.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        calibration.load(tmp_path / "missing.json")


def test_cli_without_a_gpu_writes_an_empty_calibration(tmp_path, capsys):
    import tickpath.kernels.batch as kb

    if "cuda" in kb.available_backends() or "cupy" in kb.available_backends():
        pytest.skip("a GPU is usable here: the CLI would measure it (slow)")
    out = tmp_path / "cal.json"
    assert calibration.main(["--out", str(out), "--sizes", "16", "32", "--repeats", "1"]) == 0
    assert json.loads(out.read_text())["kernels"] == {}
    assert "no GPU backend usable" in capsys.readouterr().out


def test_chain_is_calibrated_as_the_job_the_router_sends():
    """The CPU side runs its one-call fast path, a GPU implied vols then Black-Scholes."""
    calls = []

    class SpyCpu(KernelBackend):
        def reprice_chain(self, *args):
            calls.append("reprice_chain")
            return super().reprice_chain(*args)

        def implied_vol(self, *args):
            calls.append("implied_vol")
            return super().implied_vol(*args)

        def black_scholes(self, *args):
            calls.append("black_scholes")
            return super().black_scholes(*args)

    clock = VirtualClock()
    gpu = Timed("fakegpu", 1e-3, 0.0, clock)
    c = calibration.measure("chain", gpu, SpyCpu("cpu"), [500, 5000], repeats=1, clock=clock)
    assert calls and set(calls) == {"reprice_chain"}
    assert c.source == "measured" and c.kernel == "chain" and len(c.cpu_s) == 2
    # two calls of 1 ms each on the virtual clock: implied_vol and black_scholes
    assert c.gpu_s == pytest.approx([2e-3, 2e-3], abs=1e-12)
    assert gpu.supports("chain") and not Timed.__dict__.get("reprice_chain")
