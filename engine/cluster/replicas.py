"""The replica scheduler as a pure state machine: Mesos events in, decisions out.

It knows nothing of pymesos, sockets or threads.  Every input method takes the
current (monotonic) time and returns a list of decisions for the glue
(:mod:`tickpath.engine.cluster.framework`) to carry out on the driver:

    offers, status updates, rescinds, agent loss, (re)registration, ticks
        |
        v
    ReplicaSet  --->  Launch / Decline / Kill / Acknowledge / Reconcile / Suppress / Revive

Offers, statuses and events use the v1 JSON shapes that pymesos hands to callbacks
with ``use_addict=False``.  A replica *slot* ``i`` (0 <= i < replicas) serves
symbol shard ``i % shards``; at most one live task fills a slot.  Task ids carry
the slot (``tickpath.<slot>.<random>``), and every task the scheduler launches is
kept in :meth:`ReplicaSet.snapshot` (which the glue persists), so a restarted
scheduler reconciles its tasks instead of launching duplicates.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from tickpath.engine.cluster.spec import Constraint, SchedulerConfig

TASK_PREFIX = "tickpath."

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
        "TASK_UNREACHABLE",  # not terminal in Mesos, but the replica is gone for us: replace it
    }
)
LIVE_STATES = frozenset({"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"})


# ---------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """Accept ``offer_id`` with LAUNCH of ``tasks`` (TaskInfo dicts)."""

    offer_id: dict
    tasks: list[dict]
    refuse_seconds: float


@dataclass(frozen=True)
class Decline:
    """Decline offers, refusing their resources for ``refuse_seconds``."""

    offer_ids: list[dict]
    refuse_seconds: float


@dataclass(frozen=True)
class Kill:
    """Kill a task (the TaskInfo's kill policy gives it its grace period)."""

    task_id: dict
    agent_id: dict | None


@dataclass(frozen=True)
class Acknowledge:
    """Acknowledge a status update (it carries a uuid)."""

    status: dict


@dataclass(frozen=True)
class Reconcile:
    """Ask the master for the state of ``tasks`` (an empty list: every task, implicitly)."""

    tasks: list[dict]


@dataclass(frozen=True)
class Suppress:
    """Stop receiving offers."""


@dataclass(frozen=True)
class Revive:
    """Receive offers again and clear decline filters."""


Decision = Launch | Decline | Kill | Acknowledge | Reconcile | Suppress | Revive


# ---------------------------------------------------------------------------
# Resource helpers (v1 JSON)
# ---------------------------------------------------------------------------
def scalar(resources: list[dict], name: str) -> float:
    """Sum of the scalar resource ``name`` in a resource list."""
    return sum(
        float(r["scalar"]["value"])
        for r in resources
        if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR"
    )


def port_ranges(resources: list[dict]) -> list[tuple[int, int]]:
    """The ``ports`` ranges of a resource list, as inclusive ``(begin, end)`` pairs."""
    out = []
    for r in resources:
        if r.get("name") == "ports" and r.get("type") == "RANGES":
            for rng in r.get("ranges", {}).get("range", []):
                out.append((int(rng["begin"]), int(rng["end"])))
    return sorted(out)


def attribute_value(offer: dict, name: str) -> str | None:
    """An offer's agent attribute as text (``hostname`` is the offer's host name)."""
    if name == "hostname":
        return offer.get("hostname")
    for attr in offer.get("attributes", []):
        if attr.get("name") != name:
            continue
        kind = attr.get("type")
        if kind == "TEXT":
            return str(attr["text"]["value"])
        if kind == "SCALAR":
            value = float(attr["scalar"]["value"])
            return str(int(value)) if value.is_integer() else str(value)
        if kind == "RANGES":
            return ",".join(f"[{r['begin']}-{r['end']}]" for r in attr["ranges"]["range"])
        if kind == "SET":
            return ",".join(attr["set"]["item"])
    return None


def offer_address(offer: dict) -> str:
    """Where an offer's agent is reachable: its URL's IP when given, else its host name."""
    address = offer.get("url", {}).get("address", {})
    return address.get("ip") or address.get("hostname") or offer["hostname"]


def _first_resource(resources: list[dict], name: str) -> dict | None:
    for r in resources:
        if r.get("name") == name:
            return r
    return None


def _resource_like(template: dict | None, name: str, **value: object) -> dict:
    """A resource ``name`` carrying the offered resource's role/allocation/reservations."""
    res: dict = {"name": name, **value}
    if template is not None:
        for key in ("role", "allocation_info", "reservations", "reservation"):
            if key in template:
                res[key] = template[key]
    return res


def slot_of_task_id(task_id: str) -> int | None:
    """Replica slot encoded in one of our task ids, or None if it is not ours."""
    if not task_id.startswith(TASK_PREFIX):
        return None
    parts = task_id.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------
@dataclass
class Task:
    """One task we launched (or adopted from our persisted snapshot)."""

    task_id: str
    slot: int
    shard: int
    agent_id: str
    hostname: str
    address: str
    ingest_port: int
    publish_port: int
    state: str = "TASK_STAGING"
    launched_at: float = 0.0
    running_since: float | None = None
    kill_sent_at: float | None = None  # a KILL was decided at this time
    last_update_at: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)  # of its agent, for UNIQUE rules
    state_port: int = 0  # its state endpoint (``{state_port}`` in the command), 0: none

    def to_json(self) -> dict:
        """The persisted form (times are process-local, so they are left out)."""
        return {
            "task_id": self.task_id,
            "slot": self.slot,
            "shard": self.shard,
            "agent_id": self.agent_id,
            "hostname": self.hostname,
            "address": self.address,
            "ingest_port": self.ingest_port,
            "publish_port": self.publish_port,
            "state_port": self.state_port,
            "state": self.state,
            "killing": self.kill_sent_at is not None,
            "attributes": dict(self.attributes),
        }


@dataclass
class Slot:
    """Relaunch bookkeeping of one replica slot."""

    failures: int = 0
    not_before: float = 0.0  # earliest time of the next launch


@dataclass
class Counters:
    """What happened so far (for status output and tests)."""

    launched: int = 0
    failed: int = 0
    lost: int = 0
    killed: int = 0
    declined: int = 0
    rescinded: int = 0
    strays_killed: int = 0
    duplicate_updates: int = 0


@dataclass
class DeclineReason:
    """Why offers were declined while a slot waited, by rule, since the unfilled set changed."""

    count: int = 0
    last_host: str = ""
    detail: str = ""  # what the last declined offer lacked, in words
    last_at: float = 0.0

    def to_json(self, now: float) -> dict:
        """The status form: how often, where last, why, and how long ago (seconds)."""
        return {
            "count": self.count,
            "last_host": self.last_host,
            "detail": self.detail,
            "seconds_ago": round(max(0.0, now - self.last_at), 1),
        }


@dataclass
class _Reconciliation:
    phase: str = "disconnected"  # disconnected -> explicit -> implicit -> ready
    pending: set[str] = field(default_factory=set)
    attempts: int = 0
    next_at: float = 0.0
    settle_until: float = 0.0


class ReplicaSet:
    """Keeps ``config.replicas`` replicas running; see the module docstring."""

    def __init__(self, config: SchedulerConfig, snapshot: dict | None = None) -> None:
        self.config = config
        self.replicas = config.replicas
        self.tasks: dict[str, Task] = {}
        self.slots: dict[int, Slot] = {}
        self.counters = Counters()
        self.suppressed = False
        self.framework_id: str | None = None
        self._recon = _Reconciliation()
        self._rescinded: OrderedDict[str, None] = OrderedDict()
        self._last_offers_at = 0.0
        # rule -> why offers were declined while slots stayed unfilled (reset when they change)
        self.declines: dict[str, DeclineReason] = {}
        self._declines_for: tuple[int, ...] = ()
        if snapshot:
            self._restore(snapshot)

    # -- persistence ---------------------------------------------------------
    def snapshot(self) -> dict:
        """JSON-able state to persist: framework id, replica count and live tasks."""
        return {
            "framework_id": self.framework_id,
            "replicas": self.replicas,
            "tasks": [t.to_json() for t in sorted(self.tasks.values(), key=lambda t: t.slot)],
        }

    def _restore(self, snapshot: dict) -> None:
        self.framework_id = snapshot.get("framework_id")
        for item in snapshot.get("tasks", []):
            task = Task(
                task_id=item["task_id"],
                slot=int(item["slot"]),
                shard=int(item["shard"]),
                agent_id=item["agent_id"],
                hostname=item["hostname"],
                address=item["address"],
                ingest_port=int(item["ingest_port"]),
                publish_port=int(item["publish_port"]),
                state_port=int(item.get("state_port", 0)),
                state=item.get("state", "TASK_STAGING"),
                attributes=dict(item.get("attributes", {})),
            )
            if item.get("killing"):
                task.kill_sent_at = 0.0  # re-sent at the first tick after registration
            self.tasks[task.task_id] = task

    # -- queries -------------------------------------------------------------
    @property
    def phase(self) -> str:
        """``disconnected``, ``explicit``, ``implicit`` (reconciling) or ``ready``."""
        return self._recon.phase

    def live_task_of_slot(self, slot: int) -> Task | None:
        """The task filling ``slot`` and not being killed, if any."""
        for task in self.tasks.values():
            if task.slot == slot and task.kill_sent_at is None:
                return task
        return None

    def wanted_slots(self, now: float) -> list[int]:
        """Slots without a live task whose backoff has expired, lowest first."""
        return [
            slot
            for slot in range(self.replicas)
            if self.live_task_of_slot(slot) is None and self._slot(slot).not_before <= now
        ]

    def unfilled_slots(self) -> list[int]:
        """Slots without a live task, backoff or not."""
        return [s for s in range(self.replicas) if self.live_task_of_slot(s) is None]

    def endpoints(self) -> list[dict]:
        """Running replicas: where each shard's replica listens (for discovery)."""
        out = []
        for task in sorted(self.tasks.values(), key=lambda t: (t.shard, t.slot)):
            if task.state != "TASK_RUNNING" or task.kill_sent_at is not None:
                continue
            item = {
                "shard": task.shard,
                "shards": self.config.shard_count,
                "slot": task.slot,
                "task_id": task.task_id,
                "hostname": task.hostname,
                "ingest": f"tcp://{task.address}:{task.ingest_port}",
                "publish": f"tcp://{task.address}:{task.publish_port}",
            }
            if task.state_port:
                item["state"] = f"tcp://{task.address}:{task.state_port}"
            out.append(item)
        return out

    def running_twin(self, slot: int) -> Task | None:
        """A running replica of ``slot``'s shard in another slot that serves its state."""
        shard = self.config.shard_of(slot)
        for task in sorted(self.tasks.values(), key=lambda t: t.slot):
            if (
                task.shard == shard
                and task.slot != slot
                and task.state == "TASK_RUNNING"
                and task.kill_sent_at is None
                and task.state_port
            ):
                return task
        return None

    def _slot(self, slot: int) -> Slot:
        return self.slots.setdefault(slot, Slot())

    def unplaced(self, now: float) -> list[dict]:
        """Each slot without a live task: why it waits, and why the last offers were declined.

        ``waiting`` is ``reconciling`` (no launch before reconciliation ends),
        ``backoff`` (a relaunch delay after failures, ``backoff_s`` left) or
        ``offers`` (wanted; every offer since the set of unfilled slots last changed
        was declined, for the reasons in ``declined_by_rule``).
        """
        reasons = {rule: r.to_json(now) for rule, r in sorted(self.declines.items())}
        out = []
        for slot in self.unfilled_slots():
            backoff = self._slot(slot).not_before - now
            if self._recon.phase != "ready":
                waiting = "reconciling"
            elif backoff > 0:
                waiting = "backoff"
            else:
                waiting = "offers"
            out.append(
                {
                    "slot": slot,
                    "shard": slot % self.config.shard_count,
                    "waiting": waiting,
                    "backoff_s": round(max(0.0, backoff), 1),
                    "declined_by_rule": reasons,
                }
            )
        return out

    def _note_decline(self, rule: str, offer: dict, detail: str, now: float) -> None:
        unfilled = tuple(self.unfilled_slots())
        if unfilled != self._declines_for:  # a new situation: old reasons no longer apply
            self.declines.clear()
            self._declines_for = unfilled
        reason = self.declines.setdefault(rule, DeclineReason())
        reason.count += 1
        reason.last_host = str(offer.get("hostname", ""))
        reason.detail = detail
        reason.last_at = now

    # -- registration and reconciliation -------------------------------------
    def registered(self, framework_id: str, now: float) -> list[Decision]:
        """(Re)registered with the master: reconcile explicitly, then implicitly."""
        self.framework_id = framework_id
        self.suppressed = False  # a new subscription starts unsuppressed
        self._last_offers_at = now
        recon = self._recon
        recon.pending = {tid for tid, t in self.tasks.items()}
        recon.attempts = 0
        if recon.pending:
            recon.phase = "explicit"
            return self._explicit_reconcile(now)
        return self._start_implicit(now)

    def disconnected(self) -> list[Decision]:
        """Lost the master: nothing is sent until the next registration."""
        self._recon.phase = "disconnected"
        return []

    def _explicit_reconcile(self, now: float) -> list[Decision]:
        recon = self._recon
        recon.attempts += 1
        recon.next_at = now + self.config.reconcile_retry
        tasks = [
            {"task_id": {"value": tid}, "agent_id": {"value": self.tasks[tid].agent_id}}
            for tid in sorted(recon.pending)
        ]
        return [Reconcile(tasks)]

    def _start_implicit(self, now: float) -> list[Decision]:
        recon = self._recon
        recon.phase = "implicit"
        recon.pending.clear()
        recon.settle_until = now + self.config.reconcile_settle
        return [Reconcile([])]

    # -- offers --------------------------------------------------------------
    def offers(self, offers: list[dict], now: float) -> list[Decision]:
        """Place wanted replicas on matching offers; decline the rest."""
        decisions: list[Decision] = []
        declined: list[dict] = []
        self._last_offers_at = now
        wanted = self.wanted_slots(now) if self._recon.phase == "ready" else []
        for offer in offers:
            offer_id = offer["id"]
            if offer_id["value"] in self._rescinded:
                self.counters.rescinded += 1
                continue  # rescinded while queued: it is gone, nothing to answer
            tasks = self._place(offer, wanted, now) if wanted else []
            if tasks:
                refuse = self.config.refuse_seconds
                decisions.append(Launch(offer_id, tasks, refuse))
            else:
                declined.append(offer_id)
        if declined:
            self.counters.declined += len(declined)
            still_wanted = bool(self.unfilled_slots()) or self._recon.phase != "ready"
            refuse = self.config.refuse_seconds if still_wanted else self.config.refuse_seconds_idle
            decisions.append(Decline(declined, refuse))
        decisions.extend(self._offer_interest(now))
        return decisions

    def offer_rescinded(self, offer_id: dict) -> list[Decision]:
        """Remember a rescinded offer, so it is not used if still queued."""
        self._rescinded[offer_id["value"]] = None
        while len(self._rescinded) > 4096:
            self._rescinded.popitem(last=False)
        return []

    def _place(self, offer: dict, wanted: list[int], now: float) -> list[dict]:
        """Take as many wanted slots as fit on this offer; return their TaskInfos.

        An offer that takes none has its reason noted by rule (:meth:`unplaced`).
        """
        failed = self._failed_constraint(offer, self.config.constraints)
        if failed is not None:
            self._note_decline(*failed, now=now)
            return []
        res = self.config.resources
        resources = offer.get("resources", [])
        free = {
            "cpus": scalar(resources, "cpus"),
            "mem": scalar(resources, "mem"),
            "gpus": scalar(resources, "gpus"),
            "fpgas": scalar(resources, "fpgas"),
        }
        need = {"cpus": res.cpus, "mem": res.mem, "gpus": res.gpus, "fpgas": res.fpgas}
        if not res.gpus and free["gpus"] > 0:
            # keep GPU hosts for replicas (and frameworks) that need GPUs
            why = "offer has GPUs, replicas need none"
            self._note_decline("gpu host reserved", offer, why, now)
            return []
        ports = [p for lo, hi in port_ranges(resources) for p in range(lo, min(hi, lo + 64) + 1)]
        short = [k for k in need if free[k] + 1e-9 < need[k]]
        if short:
            detail = ", ".join(f"{k} {free[k]:g} < {need[k]:g}" for k in short)
            self._note_decline("resources", offer, detail, now)
            return []
        per_task = self.config.ports_per_replica
        if len(ports) < per_task:
            self._note_decline("resources", offer, f"ports: {len(ports)} < {per_task}", now)
            return []
        infos: list[dict] = []
        while wanted and all(free[k] + 1e-9 >= need[k] for k in need) and len(ports) >= per_task:
            slot = wanted.pop(0)
            ingest_port, publish_port = ports.pop(0), ports.pop(0)
            state_port = ports.pop(0) if per_task > 2 else 0
            for k in need:
                free[k] -= need[k]
            infos.append(self._task_info(offer, slot, ingest_port, publish_port, now, state_port))
            if self._has_unique_rule():
                break  # one replica per distinct value of a UNIQUE attribute: one per offer
        return infos

    def _has_unique_rule(self) -> bool:
        return any(c.unique for c in self.config.constraints)

    def _failed_constraint(
        self, offer: dict, constraints: tuple[Constraint, ...]
    ) -> tuple[str, dict, str] | None:
        """The first rule ``offer`` breaks, as ``(rule, offer, why)``; None if it meets them all."""
        for rule in constraints:
            value = attribute_value(offer, rule.attribute)
            if value is None:
                return str(rule), offer, f"agent has no attribute {rule.attribute!r}"
            if rule.unique:
                for task in self.tasks.values():
                    if task.kill_sent_at is None and self._task_attr(task, rule) == value:
                        why = f"{rule.attribute}={value} already runs {task.task_id}"
                        return str(rule), offer, why
            elif value != rule.value:
                return str(rule), offer, f"{rule.attribute}={value}, not {rule.value}"
        return None

    @staticmethod
    def _task_attr(task: Task, rule: Constraint) -> str | None:
        if rule.attribute == "hostname":
            return task.hostname
        return task.attributes.get(rule.attribute)

    def _task_info(
        self,
        offer: dict,
        slot: int,
        ingest_port: int,
        publish_port: int,
        now: float,
        state_port: int = 0,
    ) -> dict:
        cfg = self.config
        shard = cfg.shard_of(slot)
        task_id = f"{TASK_PREFIX}{slot}.{uuid.uuid4().hex[:12]}"
        offered = offer.get("resources", [])
        resources = [
            _resource_like(
                _first_resource(offered, "cpus"),
                "cpus",
                type="SCALAR",
                scalar={"value": cfg.resources.cpus},
            ),
            _resource_like(
                _first_resource(offered, "mem"),
                "mem",
                type="SCALAR",
                scalar={"value": cfg.resources.mem},
            ),
        ]
        for name, amount in (("gpus", cfg.resources.gpus), ("fpgas", cfg.resources.fpgas)):
            if amount:
                resources.append(
                    _resource_like(
                        _first_resource(offered, name),
                        name,
                        type="SCALAR",
                        scalar={"value": float(amount)},
                    )
                )
        resources.append(
            _resource_like(
                _first_resource(offered, "ports"),
                "ports",
                type="RANGES",
                ranges={
                    "range": [
                        {"begin": port, "end": port}
                        for port in (ingest_port, publish_port, state_port)
                        if port
                    ]
                },
            )
        )
        # a replica whose twin runs starts from the twin's state (docs/mesos.md)
        twin = self.running_twin(slot) if state_port else None
        state_from = f"--state-from tcp://{twin.address}:{twin.state_port}" if twin else ""
        command = cfg.command.format(
            ingest_port=ingest_port,
            publish_port=publish_port,
            shard=shard,
            shards=cfg.shard_count,
            slot=slot,
            state_port=state_port,
            state_from=state_from,
        ).rstrip()
        env = {
            "TICKPATH_SHARD": str(shard),
            "TICKPATH_SHARDS": str(cfg.shard_count),
            "TICKPATH_SLOT": str(slot),
            "TICKPATH_INGEST_PORT": str(ingest_port),
            "TICKPATH_PUBLISH_PORT": str(publish_port),
            **cfg.environment,
        }
        if state_port:
            env["TICKPATH_STATE_PORT"] = str(state_port)
        if cfg.resources.fpgas:
            env["TICKPATH_FPGAS"] = str(cfg.resources.fpgas)
        grace_ns = int(cfg.kill_grace_period * 1e9)
        info = {
            "name": f"tickpath-shard-{shard}-of-{cfg.shard_count}",
            "task_id": {"value": task_id},
            "agent_id": offer["agent_id"],
            "resources": resources,
            "command": {
                "shell": True,
                "value": command,
                "environment": {
                    "variables": [{"name": k, "value": v} for k, v in sorted(env.items())]
                },
            },
            "kill_policy": {"grace_period": {"nanoseconds": grace_ns}},
            "labels": {
                "labels": [
                    {"key": "tickpath.slot", "value": str(slot)},
                    {"key": "tickpath.shard", "value": f"{shard}/{cfg.shard_count}"},
                ]
            },
            "discovery": {
                "visibility": "FRAMEWORK",
                "name": f"tickpath-shard-{shard}",
                "ports": {
                    "ports": [
                        {"number": port, "name": name, "protocol": "tcp"}
                        for port, name in (
                            (ingest_port, "ingest"),
                            (publish_port, "publish"),
                            (state_port, "state"),
                        )
                        if port
                    ]
                },
            },
        }
        task = Task(
            task_id=task_id,
            slot=slot,
            shard=shard,
            agent_id=offer["agent_id"]["value"],
            hostname=offer["hostname"],
            address=offer_address(offer),
            ingest_port=ingest_port,
            publish_port=publish_port,
            state_port=state_port,
            launched_at=now,
            last_update_at=now,
            attributes={
                rule.attribute: attribute_value(offer, rule.attribute) or ""
                for rule in cfg.constraints
            },
        )
        self.tasks[task_id] = task
        self.counters.launched += 1
        return info

    def _offer_interest(self, now: float) -> list[Decision]:
        """Suppress when every slot is filled (or waits on backoff); revive when one is wanted."""
        if self._recon.phase != "ready":
            return []
        wanted = bool(self.wanted_slots(now))
        if wanted and self.suppressed:
            self.suppressed = False
            self._last_offers_at = now
            return [Revive()]
        if wanted and now - self._last_offers_at >= self.config.revive_after:
            self._last_offers_at = now  # a REVIVE lost on the way, or filters elsewhere
            return [Revive()]
        if not wanted and not self.suppressed:
            self.suppressed = True
            return [Suppress()]
        return []

    # -- status updates --------------------------------------------------------
    def status(self, status: dict, now: float) -> list[Decision]:
        """Handle a status update (idempotently) and acknowledge it when it has a uuid."""
        decisions: list[Decision] = []
        if status.get("uuid"):
            decisions.append(Acknowledge(status))
        task_id = status["task_id"]["value"]
        state = status["state"]
        agent_id = status.get("agent_id", {}).get("value")
        recon = self._recon
        if task_id in recon.pending:
            recon.pending.discard(task_id)
            if recon.phase == "explicit" and not recon.pending:
                decisions.extend(self._start_implicit(now))
        task = self.tasks.get(task_id)
        if task is None:
            if state in LIVE_STATES and slot_of_task_id(task_id) is not None:
                # Ours but unknown (launched by a lost run of the scheduler): never a duplicate.
                self.counters.strays_killed += 1
                decisions.append(
                    Kill({"value": task_id}, {"value": agent_id} if agent_id else None)
                )
            return decisions
        task.last_update_at = now
        if state in TERMINAL_STATES:
            decisions.extend(self._task_ended(task, state, now))
        else:
            if state == task.state:
                self.counters.duplicate_updates += 1
            task.state = state
            if agent_id:
                task.agent_id = agent_id
            if state == "TASK_RUNNING" and task.running_since is None:
                task.running_since = now
            if task.slot >= self.replicas and task.kill_sent_at is None:
                decisions.extend(self._kill(task, now))
        decisions.extend(self._offer_interest(now))
        return decisions

    def _task_ended(self, task: Task, state: str, now: float) -> list[Decision]:
        del self.tasks[task.task_id]
        if task.kill_sent_at is not None:
            self.counters.killed += 1
            return []
        slot = self._slot(task.slot)
        if state in ("TASK_LOST", "TASK_UNREACHABLE", "TASK_GONE", "TASK_DROPPED", "TASK_UNKNOWN"):
            self.counters.lost += 1  # not the replica's fault: relaunch at once
            slot.not_before = now
            return []
        self.counters.failed += 1
        ran = task.running_since is not None and now - task.running_since
        if ran and ran >= self.config.backoff_reset_after:
            slot.failures = 0
        slot.failures += 1
        slot.not_before = now + self.config.backoff(slot.failures)
        return []

    def agent_lost(self, agent_id: dict, now: float) -> list[Decision]:
        """An agent is gone: its replicas are lost (the master also sends TASK_LOST)."""
        for task in [t for t in self.tasks.values() if t.agent_id == agent_id["value"]]:
            self._task_ended(task, "TASK_LOST", now)
        return self._offer_interest(now)

    # -- scaling and timers ------------------------------------------------------
    def scale(self, replicas: int, now: float) -> list[Decision]:
        """Change the replica count: kill the highest slots, or want new ones."""
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.replicas = replicas
        decisions: list[Decision] = []
        for task in list(self.tasks.values()):
            if task.slot >= replicas and task.kill_sent_at is None:
                decisions.extend(self._kill(task, now))
        for slot in [s for s in self.slots if s >= replicas]:
            del self.slots[slot]
        decisions.extend(self._offer_interest(now))
        return decisions

    def _kill(self, task: Task, now: float) -> list[Decision]:
        task.kill_sent_at = now
        return [Kill({"value": task.task_id}, {"value": task.agent_id})]

    def tick(self, now: float) -> list[Decision]:
        """Timers: reconciliation retries, kill retries, stuck launches, backoff expiry."""
        recon = self._recon
        if recon.phase == "disconnected":
            return []
        decisions: list[Decision] = []
        if recon.phase == "explicit" and now >= recon.next_at:
            if recon.attempts >= self.config.reconcile_attempts:
                decisions.extend(self._start_implicit(now))
            else:
                decisions.extend(self._explicit_reconcile(now))
        elif recon.phase == "implicit" and now >= recon.settle_until:
            recon.phase = "ready"
            if self.wanted_slots(now):
                self.suppressed = False
                self._last_offers_at = now
                decisions.append(Revive())  # clears the decline filters set while reconciling
        if recon.phase != "ready":
            return decisions
        retry_after = self.config.kill_grace_period + self.config.kill_retry_after
        stuck = []
        for task in self.tasks.values():
            if task.kill_sent_at is not None and now - task.kill_sent_at >= retry_after:
                decisions.extend(self._kill(task, now))  # lost while disconnected, or ignored
            elif (
                task.state == "TASK_STAGING"
                and now - task.last_update_at >= self.config.launch_timeout
            ):
                task.last_update_at = now
                stuck.append(
                    {"task_id": {"value": task.task_id}, "agent_id": {"value": task.agent_id}}
                )
        if stuck:
            decisions.append(Reconcile(stuck))
        decisions.extend(self._offer_interest(now))
        return decisions
