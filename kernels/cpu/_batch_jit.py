"""Eager, cached numba compilation for the batch kernels, with a correct cache key.

numba's on-disk cache is keyed on the kernel's own file (mtime and size) and on its
bytecode. The batch kernels inline scalar code from other files
(`tickpath.kernels.reference.*_scalar`, `tickpath.kernels.philox`), so an edit there would
leave a stale kernel in the cache. `compile_kernel` adds a hash of those sources to the cache stamp,
and gives serial and parallel variants of one body distinct cache entries (numba's
index key does not include the ``parallel`` flag).
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable, Iterable
from typing import Any

from numba import njit


def source_digest(modules: Iterable[types.ModuleType]) -> str:
    """SHA-256 over the source text of `modules`."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def compile_kernel(
    body: Callable,
    signatures: str | Iterable[str],
    *,
    depends_on: Iterable[types.ModuleType],
    parallel: bool = False,
) -> Any:
    """Compile `body` now for `signatures` (cache=True, nogil=True), stamped with the
    sources it inlines; further signatures are refused, as with an eager ``njit(sig)``."""
    suffix = "_parallel" if parallel else "_serial"
    func = types.FunctionType(body.__code__, body.__globals__, body.__name__ + suffix)
    func.__qualname__ = body.__qualname__ + suffix
    func.__module__ = body.__module__
    dispatcher = njit(cache=True, nogil=True, parallel=parallel)(func)
    try:
        cache_file = dispatcher._cache._cache_file
        cache_file._source_stamp = (cache_file._source_stamp, source_digest(depends_on))
    except AttributeError:  # a numba without this cache layout: still correct, less cached
        dispatcher.disable_caching = True
    for signature in [signatures] if isinstance(signatures, str) else signatures:
        dispatcher.compile(signature)
    dispatcher.disable_compile()
    return dispatcher
