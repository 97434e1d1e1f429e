"""A wall clock readable from numba code: ``clock_gettime(CLOCK_REALTIME)`` as int64 ns.

Declared by symbol name (resolved when the compiled code is loaded), so kernels
that use it can still be cached on disk.  It reads the same clock as Python's
``time.time_ns()``, so stamps taken inside a kernel compare with stamps taken
in Python, and across processes on one host.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_CLOCK_REALTIME = 0


@intrinsic
def realtime_ns(typingctx):  # noqa: ANN001, ANN201
    """``time.time_ns()`` for numba code (an intrinsic: call it only from jitted functions)."""
    signature = types.int64()

    def codegen(context, builder, sig, args):  # noqa: ANN001, ANN202
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        timespec = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        clock_gettime = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        builder.call(clock_gettime, [ir.Constant(i32, _CLOCK_REALTIME), ts])
        zero = ir.Constant(i32, 0)
        seconds = builder.load(builder.gep(ts, [zero, zero]))
        nanoseconds = builder.load(builder.gep(ts, [zero, ir.Constant(i32, 1)]))
        return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanoseconds)

    return signature, codegen
