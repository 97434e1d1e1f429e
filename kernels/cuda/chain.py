"""Option-chain repricing on the GPU: one launch fills a chain's result records.

The CUDA twin of `tickpath.kernels.cpu.chain`, one thread per contract over the same scalar source
(`tickpath.kernels.reference.chain_scalar`, Black-Scholes in its branch-free layout): the chain's
template and buffers stay on the GPU (allocated once per chain), so a repricing moves the
option mids in (8 bytes per contract) and the finished ``RESULT_CHAIN`` records out, in
one launch, instead of the implied-vol and Black-Scholes calls with their 14 array copies
and the records built in Python.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from numba import cuda

from tickpath.engine.wire import schema as s
from tickpath.kernels.cuda._launch import THREADS_PER_BLOCK, blocks_for
from tickpath.kernels.reference import chain_scalar

_fill = chain_scalar.build(cuda.jit(device=True), branch_free=True).fill


@cuda.jit
def reprice_kernel(out, template, option_mid, S, use_implied, ts_ns, in_seq, in_send_ns,
                   recv_ns, in_stream, backend, counts):  # fmt: skip
    i = cuda.grid(1)
    if i < out.size:
        bad, bad_implied = _fill(out[i], template[i], option_mid[i], S, use_implied, ts_ns,
                                 in_seq, in_send_ns, recv_ns, in_stream, backend)  # fmt: skip
        if bad:
            cuda.atomic.add(counts, 0, bad)
        if bad_implied:
            cuda.atomic.add(counts, 1, bad_implied)


class _ChainBuffers:
    """One chain's device memory, allocated once: its template, mids, records, counters.

    cudaMalloc per repricing would cost as much as a small chain's kernel; the lock keeps
    two workers repricing the same chain from sharing the buffers at once.
    """

    def __init__(self, template: np.ndarray) -> None:
        n = template.size
        self.template = weakref.ref(template)  # the entry goes when the chain goes
        self.d_template = cuda.to_device(np.ascontiguousarray(template))
        self.d_mid = cuda.device_array(n, dtype=np.float64)
        self.d_out = cuda.device_array(n, dtype=s.RESULT_CHAIN)
        self.d_counts = cuda.device_array(2, dtype=np.int64)
        self.counts = np.zeros(2, dtype=np.int64)
        self.lock = threading.Lock()


_buffers: dict[int, _ChainBuffers] = {}
_buffers_lock = threading.Lock()


def _buffers_of(template: np.ndarray) -> _ChainBuffers:
    with _buffers_lock:
        key = id(template)
        entry = _buffers.get(key)
        if entry is None or entry.template() is not template:
            entry = _buffers[key] = _ChainBuffers(template)
            weakref.finalize(template, _forget, key, entry)
        return entry


def _forget(key: int, entry: _ChainBuffers) -> None:
    """Drop a dead chain's device buffers (unless its id was already reused)."""
    with _buffers_lock:
        if _buffers.get(key) is entry:
            del _buffers[key]


def reprice(
    out: np.ndarray,
    template: np.ndarray,
    option_mid: np.ndarray,
    S: float,
    use_implied: bool,
    provenance: tuple[int, int, int, int, int],
    backend: int,
) -> tuple[int, int]:
    """`kernels.cpu.chain.reprice` on the GPU: fills the host array `out` (RESULT_CHAIN[n]).

    Returns ``(n_non_finite, n_bad_implied)``.
    """
    n = out.size
    buf = _buffers_of(template)
    with buf.lock:
        buf.d_mid.copy_to_device(option_mid)
        buf.counts[:] = 0
        buf.d_counts.copy_to_device(buf.counts)
        reprice_kernel[blocks_for(n), THREADS_PER_BLOCK](
            buf.d_out, buf.d_template, buf.d_mid, float(S), bool(use_implied),
            *(int(p) for p in provenance), int(backend), buf.d_counts,
        )  # fmt: skip
        buf.d_out.copy_to_host(out)
        buf.d_counts.copy_to_host(buf.counts)
        return int(buf.counts[0]), int(buf.counts[1])


def warmup() -> None:
    """Compile the kernel now (one launch on a one-contract chain)."""
    template = np.zeros(1, s.RESULT_CHAIN)
    template["strike"] = template["expiry"] = 1.0
    template["sigma"] = 0.2
    out = np.empty(1, s.RESULT_CHAIN)
    reprice(out, template, np.full(1, np.nan), 1.0, False, (0, 0, 0, 0, 0), 0)
