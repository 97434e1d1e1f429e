"""Real-time scheduling of the micro path's threads (``scheduling.realtime_priority``).

The tick thread (the one in :meth:`Engine.run`) and the engine's private ZeroMQ I/O
thread (which reads the private feeds and writes the results) are the micro path.  Under
Linux's default policy they share the CPUs fairly with every other thread of the host,
and on a busy host that is not enough: measured on a 2-core VM (``perf sched``, a flood
of 1 MiB frames on a public endpoint), the tick thread stayed runnable 5.1 ms while the
flooder's ``SCHED_IDLE`` threads ran on both CPUs, one of them for 7.9 ms at a stretch.
``SCHED_FIFO`` at any priority always preempts those policies, so with it a woken tick
thread runs at once.  The kernel's real-time throttling (``sched_rt_runtime_us``, 95 %
of each second by default) still leaves the other threads of the host a share, and the
tick thread sleeps in ``zmq_poll`` whenever no frame waits, so it never spins.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("tickpath.engine")

NORMAL = "normal"


def set_realtime(tid: int, priority: int, what: str) -> str:
    """Run thread ``tid`` (0: the calling thread) under ``SCHED_FIFO`` at ``priority``.

    Returns what now applies: ``"fifo N"``, or ``"normal"`` when ``priority`` is 0 or
    the kernel refused (no ``CAP_SYS_NICE`` and no ``RLIMIT_RTPRIO``, a container
    without real-time runtime); a refusal is logged with ``what`` and the reason.
    """
    if priority <= 0:
        return NORMAL
    if not hasattr(os, "SCHED_FIFO"):
        log.warning("%s: SCHED_FIFO is not available here; normal priority", what)
        return NORMAL
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.warning("%s: cannot run under SCHED_FIFO %d (%s); normal priority", what, priority, exc)
        return NORMAL
    return f"fifo {priority}"


def set_normal(tid: int) -> None:
    """Put thread ``tid`` (0: the calling thread) back under the default policy."""
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:  # lowering is always allowed; a thread that ended is not there
        log.debug("cannot restore the default policy of thread %d: %s", tid, exc)
