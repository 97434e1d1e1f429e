"""Keep numba's on-disk cache honest for kernels that inline code from other modules.

numba keys a cached function on its own file (mtime and size) and bytecode. The
streaming frame kernels inline the L3 book and the clock, and freeze the wire
schema's constants, all from other files: an edit there would leave a stale
kernel in the cache. :func:`stamp_dependencies` adds a hash of those sources to
the cache stamp of every jitted function of a module.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

from numba.core.registry import CPUDispatcher

from tickpath.kernels.cpu._batch_jit import source_digest


def stamp_dependencies(namespace: dict, depends_on: Iterable[types.ModuleType]) -> int:
    """Add the digest of ``depends_on`` to the cache stamp of each dispatcher in ``namespace``.

    Returns how many dispatchers were stamped.  A numba whose cache layout differs
    loses caching for them (still correct, compiled at start-up instead).
    """
    digest = source_digest(depends_on)
    stamped = 0
    for value in namespace.values():
        if not isinstance(value, CPUDispatcher) or value.__module__ != namespace["__name__"]:
            continue
        try:
            cache_file = value._cache._cache_file
            cache_file._source_stamp = (cache_file._source_stamp, digest)
            stamped += 1
        except AttributeError:
            value.disable_caching = True
    return stamped
