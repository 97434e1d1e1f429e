"""What the Mesos scheduler keeps running: replica resources, placement and timing.

Frozen ``msgspec`` structs, validated once in ``__post_init__``; the state machine
(:mod:`tickpath.engine.cluster.replicas`) and the pymesos glue
(:mod:`tickpath.engine.cluster.framework`) only read them.
"""

from __future__ import annotations

import getpass
import math

import msgspec

ONE_WEEK_S = 7 * 24 * 3600.0

# The replica command.  Placeholders: {ingest_port} {publish_port} {shard} {shards} {slot},
# and, for state transfer between the replicas of a shard, {state_port} (a third port from
# the offer: the replica's state endpoint) and {state_from} ("--state-from tcp://TWIN:PORT"
# when a replica of the same shard runs at launch, else empty).
DEFAULT_COMMAND = (
    "exec tickpath serve --ingest tcp://*:{ingest_port} --publish tcp://*:{publish_port} "
    "--symbols-shard {shard}/{shards}"
)
# With more replicas than shards (redundant replicas), ``mesos run`` uses this one: each
# replica serves its state, and one launched while its twin runs starts from that state.
REDUNDANT_COMMAND = DEFAULT_COMMAND + " --state-endpoint tcp://*:{state_port} {state_from}"


class Constraint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A placement rule on an agent attribute (``hostname`` is the agent's host name).

    ``value`` ``"UNIQUE"`` means at most one replica per distinct value of the
    attribute (``hostname:UNIQUE``: one replica per host); any other value means
    the attribute must equal it (``fpga:zcu104``).
    """

    attribute: str
    value: str

    @property
    def unique(self) -> bool:
        """True for an ``ATTR:UNIQUE`` rule."""
        return self.value == "UNIQUE"

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``ATTR:VALUE`` (or ``ATTR:UNIQUE``)."""
        attribute, sep, value = text.partition(":")
        if not sep or not attribute or not value:
            raise ValueError(f"constraint must be ATTR:VALUE or ATTR:UNIQUE, got {text!r}")
        return cls(attribute=attribute, value=value)

    def __str__(self) -> str:
        return f"{self.attribute}:{self.value}"


class ReplicaResources(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Resources of one replica; each also takes two ports (ingest, publish) from the offer."""

    cpus: float = 1.0
    mem: float = 512.0  # MB
    gpus: int = 0  # whole GPUs; needs agents with --resources=gpus:N
    fpgas: int = 0  # custom scalar resource (agents: --resources=fpgas:N)

    def __post_init__(self) -> None:
        if not (self.cpus > 0 and math.isfinite(self.cpus)):
            raise ValueError(f"cpus must be > 0, got {self.cpus}")
        if not (self.mem > 0 and math.isfinite(self.mem)):
            raise ValueError(f"mem must be > 0, got {self.mem}")
        if self.gpus < 0 or self.fpgas < 0:
            raise ValueError("gpus and fpgas must be >= 0")


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the replica scheduler needs to know; times are seconds."""

    replicas: int
    shards: int = 0  # 0: as many shards as replicas; replica slot i serves shard i % shards
    resources: ReplicaResources = ReplicaResources()
    constraints: tuple[Constraint, ...] = (Constraint(attribute="hostname", value="UNIQUE"),)
    command: str = DEFAULT_COMMAND
    environment: dict[str, str] = {}
    framework_name: str = "tickpath"
    role: str = "*"
    user: str = ""  # empty: the user running the scheduler
    failover_timeout: float = ONE_WEEK_S  # the master kills our tasks this long after we vanish
    checkpoint: bool = True  # tasks survive agent restarts
    refuse_seconds: float = 5.0  # decline filter while replicas are still wanted
    refuse_seconds_idle: float = 300.0  # decline filter when nothing is wanted
    backoff_initial: float = 1.0  # relaunch delay after the first failure of a slot
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    backoff_reset_after: float = 60.0  # a replica that ran this long clears the failure count
    kill_grace_period: float = 10.0  # SIGTERM -> SIGKILL, sent as TaskInfo.kill_policy
    kill_retry_after: float = 5.0  # re-send KILL if no terminal update came after grace + this
    launch_timeout: float = 60.0  # reconcile a task still STAGING this long after launch
    reconcile_retry: float = 10.0  # re-send explicit reconciliation this often
    reconcile_attempts: int = 3  # then move on to implicit reconciliation anyway
    reconcile_settle: float = 3.0  # implicit reconciliation answers awaited this long
    revive_after: float = 30.0  # replicas wanted but no offer for this long: REVIVE again
    heartbeat_timeout: float = 45.0  # no event for this long: reconnect (Mesos beats every 15 s)

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if self.shards < 0:
            raise ValueError(f"shards must be >= 0, got {self.shards}")
        if self.backoff_initial <= 0 or self.backoff_factor < 1 or self.backoff_max <= 0:
            raise ValueError("backoff_initial > 0, backoff_factor >= 1, backoff_max > 0")
        if self.failover_timeout <= 0:
            raise ValueError("failover_timeout must be > 0")
        for key in ("{ingest_port}", "{publish_port}"):
            if key not in self.command:
                raise ValueError(f"command must contain {key}")
        self.command.format(
            ingest_port=1, publish_port=2, shard=0, shards=1, slot=0, state_port=3, state_from=""
        )
        if "{state_from}" in self.command and "{state_port}" not in self.command:
            raise ValueError("command with {state_from} must also contain {state_port}")

    @property
    def ports_per_replica(self) -> int:
        """Ports a replica takes from an offer: ingest, publish and, if used, state."""
        return 3 if "{state_port}" in self.command else 2

    @property
    def shard_count(self) -> int:
        """Number of symbol shards (``shards``, or ``replicas`` when that is 0)."""
        return self.shards or max(self.replicas, 1)

    def shard_of(self, slot: int) -> int:
        """Symbol shard served by replica slot ``slot``."""
        return slot % self.shard_count

    def backoff(self, failures: int) -> float:
        """Relaunch delay after ``failures`` consecutive failures (0: launch at once)."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_initial * self.backoff_factor ** (failures - 1))

    def framework_info(self, framework_id: str | None = None) -> dict:
        """FrameworkInfo as a v1 JSON dict (failover timeout, checkpoint, capabilities)."""
        info: dict = {
            "user": self.user or getpass.getuser(),
            "name": self.framework_name,
            "roles": [self.role],
            "failover_timeout": float(self.failover_timeout),
            "checkpoint": bool(self.checkpoint),
            "capabilities": [{"type": "MULTI_ROLE"}],
        }
        if self.resources.gpus:
            info["capabilities"].append({"type": "GPU_RESOURCES"})
        if framework_id:
            info["id"] = {"value": framework_id}
        return info
