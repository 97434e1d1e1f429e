"""Call a compiled kernel without numba's per-call typing.

A numba dispatcher types every argument of every call to pick the compiled
overload: about 50 ns per array, 1 us for a frame kernel's twenty-odd arrays
(measured against 0.3 us for the same call through the overload itself).  The
tick loop calls its kernels with the same arrays every frame, so it resolves
the overload once, at start-up, and calls it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def compiled_for(kernel: Any, args: Sequence[Any]) -> Callable[..., Any]:
    """The overload of ``kernel`` compiled for exactly the types of ``args``, or
    ``kernel`` itself when there is none yet (or ``kernel`` is not a numba dispatcher).

    The overload does not check its arguments: every later call must pass values
    of the same types as ``args`` (the same arrays, and Python ints where ``args``
    has ints), as the tick loop does.
    """
    try:
        signature = tuple(kernel.typeof_pyval(a) for a in args)
        return kernel.get_overload(signature)
    except (AttributeError, KeyError, TypeError, ValueError):
        return kernel
