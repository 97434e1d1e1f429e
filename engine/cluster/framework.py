"""The pymesos glue: drives :class:`~engine.cluster.replicas.ReplicaSet` with the real driver.

Threads::

    pymesos I/O thread --callbacks--> queue --> tickpath-scheduler thread --> driver calls
                                                  (ReplicaSet, store, discovery, watchdog)

How each pymesos 0.3.15 pitfall is avoided:

* ``failover_timeout`` and ``checkpoint`` are always sent (default one week), and
  the driver is stopped with ``failover=True``, so tasks outlive the scheduler.
* Callbacks only stamp the time and enqueue; they catch everything, so nothing
  raises into the driver (which would TEARDOWN the framework) and nothing blocks
  its I/O thread.  Work that fails on the scheduler thread is logged and followed
  by a fresh reconciliation; the framework stays up.
* pymesos is imported lazily, on the main thread (it installs a SIGINT handler, which
  the CLI replaces with its own).
* With GPUs wanted, the master's ``/version`` is checked before starting, and a
  registration without a known master version (GPU_RESOURCES dropped) reconnects.
* A heartbeat watchdog replaces the driver (same framework id) when no event came
  for ``heartbeat_timeout``; kills and launches lost while disconnected are retried
  by the state machine's timers; status updates are acknowledged explicitly.
* ``registered`` and ``reregistered`` lead to the same path (a preset framework id
  makes the first subscription a ``reregistered``).
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from tickpath.engine.cluster import replicas as rs
from tickpath.engine.cluster.discovery import DiscoveryPublisher
from tickpath.engine.cluster.spec import SchedulerConfig
from tickpath.engine.cluster.store import StateStore

log = logging.getLogger("tickpath.cluster")


class MasterUnreachable(RuntimeError):
    """The master did not answer (or refused the framework)."""


def master_version(master: str, timeout: float = 5.0) -> str:
    """``GET /version`` of a ``host:port`` master; raises :class:`MasterUnreachable`."""
    host, _, port = master.rpartition(":")
    if not host:
        host, port = master, "5050"
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise MasterUnreachable(f"master {master}: GET /version answered {response.status}")
        return str(json.loads(body)["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise MasterUnreachable(f"master {master} unreachable: {exc}") from None
    finally:
        conn.close()


def import_pymesos() -> object:
    """Import pymesos (the ``mesos`` extra); must run on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("pymesos must be imported on the main thread (it sets a SIGINT handler)")
    try:
        import pymesos
    except ImportError as exc:
        raise RuntimeError(
            "pymesos is not installed: run `python engine/cluster/install.py` "
            f"(or install the `mesos` extra): {exc}"
        ) from None
    return pymesos


class _Callbacks:
    """The object pymesos calls; every method only enqueues, and never raises."""

    def __init__(self, runner: FrameworkRunner) -> None:
        self._runner = runner

    def _post(self, kind: str, *args: object) -> None:
        try:
            self._runner._post(kind, *args)
        except Exception:  # never into the driver: it would tear the framework down
            log.exception("dropping %s callback", kind)

    def registered(self, driver: object, framework_id: dict, master_info: dict) -> None:
        self._post("registered", driver, framework_id["value"], master_info)

    def reregistered(self, driver: object, master_info: dict) -> None:
        self._post("registered", driver, None, master_info)

    def disconnected(self, driver: object) -> None:
        self._post("disconnected", driver)

    def processHeartBeat(self, driver: object) -> None:  # noqa: N802 (pymesos' names)
        self._post("heartbeat", driver)

    def resourceOffers(self, driver: object, offers: list) -> None:  # noqa: N802
        self._post("offers", driver, offers)

    def inverseOffers(self, driver: object, offers: list) -> None:  # noqa: N802
        self._post("heartbeat", driver)  # maintenance windows are not acted on

    def offerRescinded(self, driver: object, offer_id: dict) -> None:  # noqa: N802
        self._post("rescind", driver, offer_id)

    def inverseOfferRescinded(self, driver: object, offer_id: dict) -> None:  # noqa: N802
        self._post("heartbeat", driver)

    def statusUpdate(self, driver: object, status: dict) -> None:  # noqa: N802
        self._post("status", driver, status)

    def operationStatusUpdate(self, driver: object, status: dict) -> None:  # noqa: N802
        self._post("heartbeat", driver)

    def frameworkMessage(
        self, driver: object, executor_id: dict, agent_id: dict, data: str
    ) -> None:  # noqa: N802
        self._post("heartbeat", driver)

    def slaveLost(self, driver: object, agent_id: dict) -> None:  # noqa: N802
        self._post("agent_lost", driver, agent_id)

    def executorLost(self, driver: object, executor_id: dict, agent_id: dict, status: int) -> None:  # noqa: N802
        self._post("heartbeat", driver)  # command tasks: their updates say what happened

    def error(self, driver: object, message: str) -> None:
        self._post("error", driver, message)


class FrameworkRunner:
    """Runs the replica scheduler against a Mesos master with pymesos' MesosSchedulerDriver.

    ``master`` is ``host:port`` or ``zk://h1:2181,h2:2181/mesos``.  ``store`` persists
    the framework id and tasks; ``discovery`` publishes the replicas' endpoints.
    """

    def __init__(
        self,
        config: SchedulerConfig,
        master: str,
        store: StateStore | None = None,
        discovery: DiscoveryPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_interval: float = 0.1,
    ) -> None:
        self.config = config
        self.master = master
        self.store = store
        self.discovery = discovery
        self.clock = clock
        self.tick_interval = tick_interval
        snapshot = store.load() if store is not None else None
        self.replicas = rs.ReplicaSet(config, snapshot)  # replica count: from config
        self.fatal_error: str | None = None
        self.errors = 0  # exceptions caught on the scheduler thread
        self.reconnects = 0  # driver replacements by the watchdog
        self.registrations = 0
        self._events: queue.Queue = queue.Queue()
        self._callbacks = _Callbacks(self)
        self._driver = None
        self._driver_cls = None
        self._connected = False
        self._last_event = clock()
        self._stopping = threading.Event()
        self._registered_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_snapshot: dict | None = snapshot
        self._last_unplaced: dict[int, tuple] = {}  # slot -> what was last logged
        self._status_lock = threading.Lock()
        self._status: dict = {}

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Import pymesos (main thread), check the master, start the driver and our thread."""
        pymesos = import_pymesos()
        self._driver_cls = pymesos.MesosSchedulerDriver
        if not self.master.startswith(("zk://", "zoo://")):
            version = master_version(self.master)
            log.info("master %s runs Mesos %s", self.master, version)
        self._thread = threading.Thread(target=self._run, name="tickpath-scheduler", daemon=True)
        self._thread.start()
        self._driver = self._new_driver()
        self._driver.start()

    def stop(self, failover: bool = True) -> None:
        """Stop; with ``failover`` (the default) the master keeps our tasks for a successor."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        driver = self._driver
        if driver is not None:
            driver.stop(failover)
            driver.join()
        self._persist()
        if self.store is not None:
            self.store.close()
        if self.discovery is not None:
            self.discovery.close()

    def wait_registered(self, timeout: float) -> bool:
        """Block until the first registration (True) or ``timeout`` (False)."""
        return self._registered_event.wait(timeout)

    @property
    def driver_aborted(self) -> bool:
        """True if the driver's I/O thread died without our asking (e.g. HTTP 403)."""
        driver = self._driver
        return driver is not None and driver.aborted and not self._stopping.is_set()

    def scale(self, replicas: int) -> None:
        """Change the replica count (thread-safe)."""
        self._post("scale", None, replicas)

    def status(self) -> dict:
        """A copy of the latest status document (the one discovery publishes)."""
        with self._status_lock:
            return json.loads(json.dumps(self._status))

    def _new_driver(self) -> object:
        framework = self.config.framework_info(self.replicas.framework_id)
        return self._driver_cls(
            self._callbacks,
            framework,
            self.master,
            use_addict=False,
            implicit_acknowledgements=False,
            failover=True,  # an exception that escapes anyway must not tear the framework down
        )

    # -- the scheduler thread -----------------------------------------------------
    def _post(self, kind: str, driver: object, *args: object) -> None:
        self._last_event = self.clock()
        if kind != "heartbeat":
            self._events.put((kind, driver, args))

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stopping.is_set():
            try:
                kind, driver, args = self._events.get(timeout=self.tick_interval)
            except queue.Empty:
                kind = None
            now = self.clock()
            decisions: list[rs.Decision] = []
            try:
                if kind is not None and (driver is None or driver is self._driver):
                    decisions += self._handle(kind, args, now)
                if now >= next_tick:
                    next_tick = now + self.tick_interval
                    decisions += self.replicas.tick(now)
            except Exception:
                self.errors += 1
                log.exception("scheduler logic failed on %s; reconciling", kind)
                decisions += self._resync(now)
            self._persist()
            self._execute(decisions)
            self._publish(now)
            self._watchdog(now)

    def _resync(self, now: float) -> list[rs.Decision]:
        try:
            if self._connected and self.replicas.framework_id:
                return self.replicas.registered(self.replicas.framework_id, now)
        except Exception:
            self.errors += 1
            log.exception("resync failed")
        return []

    def _handle(self, kind: str, args: tuple, now: float) -> list[rs.Decision]:
        replicas = self.replicas
        if kind == "registered":
            framework_id, master_info = args
            framework_id = framework_id or self._driver.framework_id
            self._connected = True
            self.registrations += 1
            log.info("registered as %s with %s", framework_id, master_info)
            if self.config.resources.gpus and not getattr(self._driver, "version", None):
                log.warning("GPU_RESOURCES may have been dropped (no master version): reconnecting")
                self._reconnect()
                return []
            decisions = replicas.registered(framework_id, now)
            self._persist()  # the framework id, before anything else happens
            self._registered_event.set()
            return decisions
        if kind == "disconnected":
            self._connected = False
            return replicas.disconnected()
        if kind == "offers":
            for offer_id in self._queued_rescinds():
                replicas.offer_rescinded(offer_id)  # already rescinded: do not use it
            return replicas.offers(args[0], now)
        if kind == "rescind":
            return replicas.offer_rescinded(args[0])
        if kind == "status":
            status = args[0]
            task = replicas.tasks.get(status["task_id"]["value"])
            decisions = replicas.status(status, now)
            ended = task is not None and task.task_id not in replicas.tasks
            if ended and task.kill_sent_at is None:
                log.warning(
                    "slot %d (shard %d) task %s ended, not killed by the scheduler: %s%s",
                    task.slot,
                    task.shard,
                    task.task_id,
                    status["state"],
                    f" ({status['message']})" if status.get("message") else "",
                )
            return decisions
        if kind == "agent_lost":
            return replicas.agent_lost(args[0], now)
        if kind == "scale":
            return replicas.scale(args[0], now)
        if kind == "error":
            self.fatal_error = f"master error: {args[0]}"
            log.error("%s", self.fatal_error)
            return []
        raise ValueError(f"unknown event {kind}")

    def _queued_rescinds(self) -> list[dict]:
        """Offer ids of RESCIND events still waiting in the queue (they stay queued)."""
        with self._events.mutex:
            return [args[0] for kind, _, args in self._events.queue if kind == "rescind"]

    def _execute(self, decisions: list[rs.Decision]) -> None:
        driver = self._driver
        for d in decisions:
            try:
                if isinstance(d, rs.Launch):
                    driver.launchTasks([d.offer_id], d.tasks, {"refuse_seconds": d.refuse_seconds})
                elif isinstance(d, rs.Decline):
                    driver.declineOffer(d.offer_ids, {"refuse_seconds": d.refuse_seconds})
                elif isinstance(d, rs.Acknowledge):
                    driver.acknowledgeStatusUpdate(d.status)
                elif isinstance(d, rs.Kill):
                    driver.killTask(d.task_id)
                elif isinstance(d, rs.Reconcile):
                    driver.reconcileTasks(d.tasks)
                elif isinstance(d, rs.Suppress):
                    driver.suppressOffers()
                elif isinstance(d, rs.Revive):
                    driver.reviveOffers()
            except Exception:
                # Lost calls are retried by the state machine's timers or re-sent by the master.
                self.errors += 1
                log.exception("driver call %s failed", type(d).__name__)

    def _persist(self) -> None:
        if self.store is None:
            return
        snapshot = self.replicas.snapshot()
        if snapshot == self._last_snapshot or not snapshot.get("framework_id"):
            return
        try:
            self.store.save(snapshot)
            self._last_snapshot = snapshot
        except Exception:
            self.errors += 1
            log.exception("could not persist the framework state")

    def _publish(self, now: float) -> None:
        replicas = self.replicas
        unplaced = replicas.unplaced(now)
        self._log_unplaced(unplaced)
        document = {
            "framework_id": replicas.framework_id,
            "master": self.master,
            "replicas": replicas.replicas,
            "shards": self.config.shard_count,
            "phase": replicas.phase,
            "connected": self._connected,
            "suppressed": replicas.suppressed,
            "endpoints": replicas.endpoints(),
            "unplaced": unplaced,
            "tasks": {t.task_id: t.state for t in replicas.tasks.values()},
            "counters": dict(vars(replicas.counters)),
            "errors": self.errors,
            "reconnects": self.reconnects,
            "registrations": self.registrations,
            "updated_unix": time.time(),
        }
        if self.discovery is not None:
            try:
                self.discovery.publish(document)
            except Exception:
                self.errors += 1
                log.exception("could not publish discovery")
        with self._status_lock:  # after discovery: what status() shows is published
            self._status = document

    def _log_unplaced(self, unplaced: list[dict]) -> None:
        """Log at INFO, once per change of a slot, why it waits and which rules declined offers."""
        now_logged: dict[int, tuple] = {}
        for u in unplaced:
            summary = (u["waiting"], tuple(sorted(u["declined_by_rule"])))
            now_logged[u["slot"]] = summary
            if self._last_unplaced.get(u["slot"]) == summary:
                continue
            rules = "; ".join(
                f"{rule}: {r['detail']} (x{r['count']}, last {r['last_host']})"
                for rule, r in u["declined_by_rule"].items()
            )
            log.info(
                "slot %d (shard %d) unplaced, waiting for %s%s",
                u["slot"],
                u["shard"],
                u["waiting"],
                f"; offers declined by {rules}" if rules else "",
            )
        for slot in sorted(set(self._last_unplaced) - set(now_logged)):
            log.info("slot %d placed", slot)
        self._last_unplaced = now_logged

    def _watchdog(self, now: float) -> None:
        if not self._connected or self._stopping.is_set():
            return
        if now - self._last_event > self.config.heartbeat_timeout:
            log.warning("no event from the master for %.1f s: reconnecting", now - self._last_event)
            self._reconnect()

    def _reconnect(self) -> None:
        """Replace the driver (same framework id); the old one stops without TEARDOWN."""
        self.reconnects += 1
        self._connected = False
        self.replicas.disconnected()
        old = self._driver
        try:
            old.stop(True)
            old.join()
        except Exception:
            log.exception("stopping the old driver failed")
        self._last_event = self.clock()
        self._driver = self._new_driver()
        self._driver.start()
