"""compiled_for: a kernel's overload called without the dispatcher's typing."""

from __future__ import annotations

import numba
import numpy as np

from tickpath.engine.bench.ingest import make_frames
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.calls import compiled_for


@numba.njit(cache=False)
def _scaled_sum(values, factor):
    return values.sum() * factor


def test_the_overload_of_the_arguments_types_is_called_directly():
    values = np.arange(10, dtype=np.int64)
    assert _scaled_sum(values, 3) == 135  # compiles (int64[::1], int64)
    direct = compiled_for(_scaled_sum, (values, 3))
    assert direct is not _scaled_sum
    assert direct(values, 2) == 90
    assert direct(np.ones(4, np.int64), 5) == 20


def test_the_dispatcher_stays_where_no_overload_fits():
    assert compiled_for(_scaled_sum, (np.ones(3, np.float32), 1)) is _scaled_sum
    assert compiled_for(_scaled_sum, (object(), 1)) is _scaled_sum
    assert compiled_for(len, ([1],)) is len  # not a numba dispatcher


def test_a_warmed_up_processor_calls_overloads_with_the_same_results():
    """The same frames (every kind, versions 1 and 2) through a processor that calls
    the kernels' overloads (after warm_up) and one that calls the dispatchers: the same
    results and the same state."""
    config = load_config(None, {"analytics.n_symbols": 16})
    frames = make_frames(40 * 64, 64, 16, seed=3)
    direct = StreamProcessor(config)
    direct.warm_up()
    assert all(not isinstance(kernel, numba.core.registry.CPUDispatcher)
               for kernel, _, _ in direct._calls.values())  # fmt: skip
    typed = StreamProcessor(config)
    assert all(isinstance(kernel, numba.core.registry.CPUDispatcher)
               for kernel, _, _ in typed._calls.values())  # fmt: skip
    kinds = set()
    for i, frame in enumerate(frames):
        kinds.add(frame[6])
        got, want = direct.feed(frame, recv_ns=i), typed.feed(frame, recv_ns=i)
        assert [a for a, _ in got] == [a for a, _ in want]
        for (_, a), (_, b) in zip(got, want, strict=True):
            for result in (a, b):  # the clock's stamp when the results were made
                result["send_ns"] = result["done_ns"] = 0
            assert a.tobytes() == b.tobytes()
    assert kinds == {s.KIND_TRADE, s.KIND_QUOTE, s.KIND_ORDER}
    assert np.array_equal(direct.state.sym_i, typed.state.sym_i)
    assert np.array_equal(direct.state.sym_f, typed.state.sym_f, equal_nan=True)
    assert np.array_equal(direct.state.counters, typed.state.counters)
    # a frame of an unknown kind and a truncated one are refused the same way
    for bad in (frames[0][:20], b"\x00" * 64):
        assert direct.feed(bad) == typed.feed(bad) == []
    assert np.array_equal(direct.state.counters, typed.state.counters)
