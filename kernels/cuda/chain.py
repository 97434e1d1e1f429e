"""Option-chain repricing on the GPU: one launch fills a chain's result records.

The CUDA twin of `kernels.cpu.chain`, one thread per contract over the same scalar source
(`kernels.reference.chain_scalar`, Black-Scholes in its branch-free layout): the chain's
template stays on the GPU (copied once per chain), so a repricing moves the option mids in
(8 bytes per contract) and the finished ``RESULT_CHAIN`` records out, in one launch,
instead of the implied-vol and Black-Scholes calls with their 14 array copies and the
records built in Python.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import cuda

from engine.wire import schema as s
from kernels.cuda._launch import THREADS_PER_BLOCK, blocks_for
from kernels.reference import chain_scalar

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


class _Templates:
    """Device copies of chain templates, one per template array (chains are few and fixed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: dict[int, tuple[np.ndarray, object]] = {}

    def get(self, template: np.ndarray) -> object:
        with self._lock:
            entry = self._copies.get(id(template))
            if entry is None or entry[0] is not template:
                entry = (template, cuda.to_device(np.ascontiguousarray(template)))
                self._copies[id(template)] = entry  # keeps `template` alive: ids stay unique
            return entry[1]


_templates = _Templates()


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
    d_out = cuda.device_array(n, dtype=s.RESULT_CHAIN)
    counts = cuda.to_device(np.zeros(2, dtype=np.int64))
    reprice_kernel[blocks_for(n), THREADS_PER_BLOCK](
        d_out, _templates.get(template), cuda.to_device(option_mid), float(S),
        bool(use_implied), *(int(p) for p in provenance), int(backend), counts,
    )  # fmt: skip
    d_out.copy_to_host(out)
    n_bad, n_bad_implied = (int(c) for c in counts.copy_to_host())
    return n_bad, n_bad_implied


def warmup() -> None:
    """Compile the kernel now (one launch on a one-contract chain)."""
    template = np.zeros(1, s.RESULT_CHAIN)
    template["strike"] = template["expiry"] = 1.0
    template["sigma"] = 0.2
    out = np.empty(1, s.RESULT_CHAIN)
    reprice(out, template, np.full(1, np.nan), 1.0, False, (0, 0, 0, 0, 0), 0)
