"""An in-process Mesos master speaking the v1 scheduler HTTP API, with local agents.

Faithful to the parts of Mesos 1.11 a scheduler sees (see shared/notes/mesos.md):

* ``GET /version``; ``POST /api/v1/scheduler`` with SUBSCRIBE answered by a chunked
  RecordIO stream (``<length>\\n<json>``) with a ``Mesos-Stream-Id`` header, the first
  event SUBSCRIBED, then HEARTBEAT / OFFERS / RESCIND / UPDATE / FAILURE / ERROR events
  in their nested scheduler.proto shapes; a new SUBSCRIBE replaces the old stream;
* every other call answered 202 (empty body), or 403 with a wrong stream id:
  ACCEPT (LAUNCH), DECLINE (``filters.refuse_seconds``, default 5), KILL, ACKNOWLEDGE,
  RECONCILE (unknown tasks: TASK_LOST), REVIVE, SUPPRESS, MESSAGE, TEARDOWN;
* offers per agent from the resources its tasks do not use (cpus, mem, gpus, custom
  scalars such as ``fpgas``, port ranges) and its TEXT attributes; launches with an
  unknown offer get TASK_LOST, launches beyond the offer TASK_ERROR;
* a framework whose scheduler went away is torn down after its ``failover_timeout``.

Agents run accepted tasks as real local processes (``command.value`` through the
shell, with ``command.environment``) and report STARTING, RUNNING and the exit as
FINISHED / FAILED / KILLED; KILL sends SIGTERM, then SIGKILL after the task's
``kill_policy.grace_period``.  Unacknowledged updates are re-sent on re-subscription.

Fault injection: :meth:`StandinMaster.crash_task`, :meth:`lose_agent`,
:meth:`rescind_offers`, :meth:`rescind_next_offers`, :meth:`drop_stream`,
:meth:`hang_stream`, :meth:`inject_event`, :meth:`refuse_subscriptions`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR"}


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return sorted(ports)


def _ranges(ports: list[int]) -> list[dict]:
    out: list[dict] = []
    for p in sorted(ports):
        if out and out[-1]["end"] == p - 1:
            out[-1]["end"] = p
        else:
            out.append({"begin": p, "end": p})
    return out


@dataclass
class AgentSpec:
    """One stand-in agent: host name, scalar resources, ports and TEXT attributes."""

    hostname: str
    cpus: float = 4.0
    mem: float = 4096.0
    scalars: dict[str, float] = field(default_factory=dict)  # e.g. {"gpus": 1, "fpgas": 2}
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. {"fpga": "zcu104"}
    n_ports: int = 6


@dataclass
class _Agent:
    agent_id: str
    spec: AgentSpec
    ports: list[int]
    lost: bool = False


@dataclass
class _Task:
    info: dict
    framework_id: str
    agent: _Agent
    proc: subprocess.Popen | None = None
    state: str = "TASK_STAGING"
    kill_at: float | None = None
    ended_at: float | None = None  # time.monotonic() when the agent saw the process exit
    grace: float = 3.0
    log_path: Path | None = None

    @property
    def task_id(self) -> str:
        return self.info["task_id"]["value"]

    def uses(self, name: str) -> float:
        return sum(
            float(r["scalar"]["value"])
            for r in self.info.get("resources", [])
            if r["name"] == name and r.get("type") == "SCALAR"
        )

    def ports(self) -> list[int]:
        out = []
        for r in self.info.get("resources", []):
            if r["name"] == "ports":
                for rng in r["ranges"]["range"]:
                    out.extend(range(int(rng["begin"]), int(rng["end"]) + 1))
        return out


class _Stream:
    """One subscriber connection: events are queued and written by its handler thread."""

    def __init__(self, framework_id: str) -> None:
        self.stream_id = str(uuid.uuid4())
        self.framework_id = framework_id
        self.cond = threading.Condition()
        self.events: list[bytes] = []
        self.closed = False
        self.hung = False  # fault: write nothing more, keep the connection open

    def put(self, event: dict) -> None:
        data = json.dumps(event).encode()
        with self.cond:
            if not self.hung:
                self.events.append(b"%d\n%s" % (len(data), data))
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


@dataclass
class _Framework:
    framework_id: str
    info: dict
    stream: _Stream | None = None
    disconnected_at: float | None = None
    suppressed: bool = False
    filters: dict[str, float] = field(default_factory=dict)  # agent id -> refused until
    offers: dict[str, tuple[str, list[dict]]] = field(default_factory=dict)
    unacked: dict[str, dict] = field(default_factory=dict)  # uuid -> status
    removed: bool = False
    last_heartbeat: float = 0.0


class StandinMaster:
    """A local Mesos master + agents; see the module docstring."""

    def __init__(
        self,
        agents: list[AgentSpec],
        workdir: Path,
        heartbeat_interval: float = 1.0,
        offer_interval: float = 0.1,
        version: str = "1.11.0",
    ) -> None:
        self.workdir = Path(workdir)
        self.heartbeat_interval = heartbeat_interval
        self.offer_interval = offer_interval
        self.version = version
        self.lock = threading.RLock()
        self.agents: dict[str, _Agent] = {}
        for i, spec in enumerate(agents):
            agent_id = f"agent-{i}-S{i}"
            self.agents[agent_id] = _Agent(agent_id, spec, free_ports(spec.n_ports))
        self.frameworks: dict[str, _Framework] = {}
        self.tasks: dict[str, _Task] = {}
        self.calls: list[dict] = []  # every call body received, in order
        self.call_times: list[float] = []  # time.monotonic() of each of them
        self.subscriptions: list[dict] = []  # every SUBSCRIBE body
        self.stream_answers: list[int] = []  # HTTP status of every SUBSCRIBE
        self.events_sent: list[dict] = []
        self.launched: list[dict] = []  # every TaskInfo the agents started
        self.refused_with: tuple[int, str] | None = None
        self._rescind_next = 0
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------
    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the master URI for pymesos."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandinMaster:
        """Serve HTTP and run the allocator/agent loop in background threads."""
        for target in (self._server.serve_forever, self._loop):
            t = threading.Thread(target=target, daemon=True, name=f"standin-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Kill every task process and stop serving."""
        self._stop.set()
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.close()
            for task in self.tasks.values():
                self._signal(task, signal.SIGKILL)
        for task in list(self.tasks.values()):
            if task.proc is not None:
                try:
                    task.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self._server.shutdown()
        self._server.server_close()

    # -- observation ---------------------------------------------------------------
    def calls_of(self, kind: str) -> list[dict]:
        """Received calls of one type (``"ACCEPT"``, ``"KILL"``...)."""
        with self.lock:
            return [c for c in self.calls if c.get("type") == kind]

    def live_tasks(self, framework_id: str | None = None) -> list[_Task]:
        """Tasks whose process is (or is about to be) running."""
        with self.lock:
            return [
                t
                for t in self.tasks.values()
                if t.state not in TERMINAL
                and (framework_id is None or t.framework_id == framework_id)
            ]

    def describe(self, log_lines: int = 12) -> str:
        """Every task the agents started, in launch order: its agent, ports, state, exit
        status and the tail of its output (printed when a cluster test fails)."""
        with self.lock:
            tasks = list(self.tasks.values())
        out = [f"stand-in master {self.address}: {len(tasks)} task(s)"]
        for task in tasks:
            proc = task.proc
            code = None if proc is None else proc.poll()
            out.append(
                f"- {task.task_id} on {task.agent.spec.hostname} ports {task.ports()}: "
                f"{task.state}, pid {proc.pid if proc else None}, exit {code}"
            )
            if task.log_path is not None and task.log_path.exists():
                tail = task.log_path.read_text(errors="replace").splitlines()[-log_lines:]
                out.extend(f"    {line}" for line in tail)
        return "\n".join(out)

    def framework(self, framework_id: str) -> _Framework | None:
        """A framework by id."""
        with self.lock:
            return self.frameworks.get(framework_id)

    # -- fault injection ----------------------------------------------------------
    def crash_task(self, task_id: str) -> None:
        """The replica process dies (SIGKILL): the agent reports TASK_FAILED."""
        with self.lock:
            self._signal(self.tasks[task_id], signal.SIGKILL)

    def lose_agent(self, agent_id: str) -> None:
        """The agent vanishes: its processes die, TASK_LOST per task, then FAILURE."""
        with self.lock:
            agent = self.agents[agent_id]
            agent.lost = True
            for fw in self.frameworks.values():
                for offer_id, (aid, _) in list(fw.offers.items()):
                    if aid == agent_id:
                        del fw.offers[offer_id]
                        self._send(
                            fw, {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}}
                        )
            for task in list(self.tasks.values()):
                if task.agent is agent and task.state not in TERMINAL:
                    self._signal(task, signal.SIGKILL)
                    task.state = "TASK_LOST"
                    self._update(
                        task, "TASK_LOST", "Agent removed", reason="REASON_AGENT_REMOVED", ack=False
                    )
            for fw in self.frameworks.values():
                self._send(fw, {"type": "FAILURE", "failure": {"agent_id": {"value": agent_id}}})

    def rescind_offers(self) -> int:
        """Rescind every outstanding offer; return how many."""
        n = 0
        with self.lock:
            for fw in self.frameworks.values():
                for offer_id in list(fw.offers):
                    del fw.offers[offer_id]
                    self._send(
                        fw, {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}}
                    )
                    n += 1
        return n

    def rescind_next_offers(self, n: int) -> None:
        """The next ``n`` offers are rescinded right after they are sent."""
        with self.lock:
            self._rescind_next = n

    def drop_stream(self) -> None:
        """Close every subscriber's event stream (the scheduler should re-subscribe)."""
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.close()

    def hang_stream(self) -> None:
        """Stop sending anything (heartbeats included) on the open streams; keep TCP open."""
        with self.lock:
            for fw in self.frameworks.values():
                if fw.stream:
                    fw.stream.hung = True

    def inject_event(self, event: dict) -> None:
        """Send a raw event to every subscriber."""
        with self.lock:
            for fw in self.frameworks.values():
                self._send(fw, event)

    def refuse_subscriptions(self, status: int, message: str) -> None:
        """Answer every SUBSCRIBE with ``status`` and ``message`` (e.g. 403)."""
        with self.lock:
            self.refused_with = (status, message)

    # -- HTTP ---------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        master = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def _reply(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if body:
                    self.send_header("Content-Type", ctype)
                # Status line, headers and body in one write, as a master answering a
                # small request does: pymesos 0.3.15 fails on a 4xx whose body arrives
                # in a later segment than its headers (it adds str to bytes).
                self._headers_buffer.append(b"\r\n")
                data = b"".join(self._headers_buffer) + body
                self._headers_buffer = []
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path == "/version":
                    body = json.dumps({"version": master.version, "git_tag": master.version})
                    self._reply(200, body.encode(), "application/json")
                else:
                    self._reply(404)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if self.path != "/api/v1/scheduler":
                    self._reply(404)
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._reply(400, b"Failed to parse body")
                    return
                if body.get("type") == "SUBSCRIBE":
                    master._subscribe(self, body)
                    return
                status, text = master._call(body, self.headers.get("Mesos-Stream-Id"))
                self._reply(status, text.encode())

        return Handler

    def _subscribe(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        with self.lock:
            self.subscriptions.append(body)
            if self.refused_with is not None:
                status, message = self.refused_with
                self.stream_answers.append(status)
                handler._reply(status, message.encode())
                return
            info = body["subscribe"]["framework_info"]
            fid = (body.get("framework_id") or info.get("id") or {}).get("value")
            fw = self.frameworks.get(fid) if fid else None
            if fw is not None and fw.removed:
                stream = _Stream(fid)
                stream.put({"type": "ERROR", "error": {"message": "Framework has been removed"}})
                stream.close()
            else:
                if fw is None:
                    fid = fid or f"{uuid.uuid4()}-0000"
                    fw = self.frameworks[fid] = _Framework(fid, info)
                fw.info = info
                if fw.stream is not None:
                    fw.stream.close()  # a new SUBSCRIBE replaces the old stream
                stream = fw.stream = _Stream(fid)
                fw.disconnected_at = None
                fw.suppressed = False
                fw.offers.clear()  # outstanding offers of the old stream are void
                fw.last_heartbeat = time.monotonic()
                self._send(
                    fw,
                    {
                        "type": "SUBSCRIBED",
                        "subscribed": {
                            "framework_id": {"value": fid},
                            "heartbeat_interval_seconds": self.heartbeat_interval,
                            "master_info": {
                                "id": "standin",
                                "ip": 16777343,
                                "port": self._server.server_address[1],
                                "hostname": "127.0.0.1",
                                "version": self.version,
                            },
                        },
                    },
                )
                for status in fw.unacked.values():
                    self._send(fw, {"type": "UPDATE", "update": {"status": status}})
            self.stream_answers.append(200)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Mesos-Stream-Id", stream.stream_id)
        handler.end_headers()
        handler.close_connection = True
        try:
            while True:
                with stream.cond:
                    while not stream.events and not stream.closed and not self._stop.is_set():
                        stream.cond.wait(0.2)
                    events, stream.events = stream.events, []
                    closed = stream.closed or self._stop.is_set()
                for record in events:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(record), record))
                handler.wfile.flush()
                if closed:
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                fw = self.frameworks.get(stream.framework_id)
                if fw is not None and fw.stream is stream:
                    fw.stream = None
                    fw.disconnected_at = time.monotonic()
                    fw.offers.clear()
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _call(self, body: dict, stream_id: str | None) -> tuple[int, str]:
        with self.lock:
            self.calls.append(body)
            self.call_times.append(time.monotonic())
            fid = body.get("framework_id", {}).get("value")
            fw = self.frameworks.get(fid)
            if fw is None or fw.removed:
                return 403, "Framework is not subscribed"
            if fw.stream is None or fw.stream.stream_id != stream_id:
                return 403, "The stream ID included in this request didn't match"
            kind = body.get("type")
            handler = getattr(self, f"_on_{kind.lower()}", None) if kind else None
            if handler is None:
                return 400, f"unsupported call {kind}"
            handler(fw, body.get(kind.lower(), {}))
            return 202, ""

    # -- calls ----------------------------------------------------------------------
    def _on_accept(self, fw: _Framework, accept: dict) -> None:
        offer_ids = [o["value"] for o in accept.get("offer_ids", [])]
        valid = all(oid in fw.offers for oid in offer_ids) and offer_ids
        agent_ids = {fw.offers[oid][0] for oid in offer_ids if oid in fw.offers}
        offered: list[dict] = []
        for oid in offer_ids:
            if oid in fw.offers:
                offered += fw.offers.pop(oid)[1]
        refuse = float(accept.get("filters", {}).get("refuse_seconds", 5.0))
        for aid in agent_ids:
            fw.filters[aid] = time.monotonic() + refuse
        budget = {
            r["name"]: float(r["scalar"]["value"]) for r in offered if r.get("type") == "SCALAR"
        }
        port_budget = {
            p
            for r in offered
            if r["name"] == "ports"
            for rng in r["ranges"]["range"]
            for p in range(rng["begin"], rng["end"] + 1)
        }
        for op in accept.get("operations", []):
            if op.get("type") != "LAUNCH":
                continue
            for info in op["launch"]["task_infos"]:
                task = _Task(info, fw.framework_id, self.agents.get(info["agent_id"]["value"]))
                if not valid or len(agent_ids) != 1 or task.agent is None:
                    self._update_raw(
                        fw,
                        info,
                        "TASK_LOST",
                        "Task launched with invalid offers",
                        "REASON_INVALID_OFFERS",
                    )
                    continue
                error = None
                for r in info.get("resources", []):
                    if r.get("type") == "SCALAR":
                        budget[r["name"]] = budget.get(r["name"], 0.0) - float(r["scalar"]["value"])
                        if budget[r["name"]] < -1e-9:
                            error = f"insufficient {r['name']}"
                if not set(task.ports()) <= port_budget:
                    error = "ports not offered"
                port_budget -= set(task.ports())
                if info["task_id"]["value"] in self.tasks:
                    error = "duplicate task id"
                if error:
                    self._update_raw(fw, info, "TASK_ERROR", error, "REASON_TASK_INVALID")
                    continue
                self.tasks[task.task_id] = task
                self.launched.append(info)
                self._spawn(task)

    def _on_decline(self, fw: _Framework, decline: dict) -> None:
        refuse = float(decline.get("filters", {}).get("refuse_seconds", 5.0))
        for o in decline.get("offer_ids", []):
            item = fw.offers.pop(o["value"], None)
            if item is not None:
                fw.filters[item[0]] = time.monotonic() + refuse

    def _on_kill(self, fw: _Framework, kill: dict) -> None:
        task = self.tasks.get(kill["task_id"]["value"])
        if task is None or task.state in TERMINAL:
            self._update_raw(
                fw,
                {"task_id": kill["task_id"], "agent_id": kill.get("agent_id")},
                "TASK_LOST",
                "Attempted to kill an unknown task",
                "REASON_RECONCILIATION",
                ack=False,
            )
            return
        if task.kill_at is None:
            task.kill_at = time.monotonic()
            self._signal(task, signal.SIGTERM)

    def _on_acknowledge(self, fw: _Framework, ack: dict) -> None:
        fw.unacked.pop(ack["uuid"], None)

    def _on_reconcile(self, fw: _Framework, reconcile: dict) -> None:
        wanted = reconcile.get("tasks", [])
        if not wanted:
            for task in self.tasks.values():
                if task.framework_id == fw.framework_id and task.state not in TERMINAL:
                    self._update(
                        task,
                        task.state,
                        "Reconciliation: latest task state",
                        reason="REASON_RECONCILIATION",
                        ack=False,
                    )
            return
        for item in wanted:
            task = self.tasks.get(item["task_id"]["value"])
            if task is not None and task.framework_id == fw.framework_id:
                self._update(
                    task,
                    task.state,
                    "Reconciliation: latest task state",
                    reason="REASON_RECONCILIATION",
                    ack=False,
                )
            else:
                self._update_raw(
                    fw,
                    item,
                    "TASK_LOST",
                    "Reconciliation: task is unknown",
                    "REASON_RECONCILIATION",
                    ack=False,
                )

    def _on_revive(self, fw: _Framework, _body: dict) -> None:
        fw.suppressed = False
        fw.filters.clear()

    def _on_suppress(self, fw: _Framework, _body: dict) -> None:
        fw.suppressed = True

    def _on_message(self, fw: _Framework, _body: dict) -> None:
        pass

    def _on_teardown(self, fw: _Framework, _body: dict) -> None:
        self._remove_framework(fw)

    def _remove_framework(self, fw: _Framework) -> None:
        fw.removed = True
        for task in self.tasks.values():
            if task.framework_id == fw.framework_id and task.state not in TERMINAL:
                task.kill_at = task.kill_at or time.monotonic()
                self._signal(task, signal.SIGKILL)
        if fw.stream is not None:
            fw.stream.close()

    # -- events ---------------------------------------------------------------------
    def _send(self, fw: _Framework, event: dict) -> None:
        self.events_sent.append(event)
        if fw.stream is not None:
            fw.stream.put(event)

    def _update(
        self, task: _Task, state: str, message: str, reason: str | None = None, ack: bool = True
    ) -> None:
        fw = self.frameworks.get(task.framework_id)
        if fw is not None:
            self._update_raw(fw, task.info, state, message, reason, ack)

    def _update_raw(
        self,
        fw: _Framework,
        info: dict,
        state: str,
        message: str,
        reason: str | None = None,
        ack: bool = True,
    ) -> None:
        status = {
            "task_id": info["task_id"],
            "state": state,
            "message": message,
            "source": "SOURCE_EXECUTOR" if ack else "SOURCE_MASTER",
            "timestamp": time.time(),
        }
        if info.get("agent_id"):
            status["agent_id"] = info["agent_id"]
        if reason:
            status["reason"] = reason
        if ack:
            uid = base64.b64encode(uuid.uuid4().bytes).decode()
            status["uuid"] = uid
            fw.unacked[uid] = status
        self._send(fw, {"type": "UPDATE", "update": {"status": status}})

    # -- agents -----------------------------------------------------------------------
    def _spawn(self, task: _Task) -> None:
        command = task.info["command"]
        env = dict(os.environ)
        for var in command.get("environment", {}).get("variables", []):
            env[var["name"]] = var["value"]
        env["MESOS_TASK_ID"] = task.task_id
        env["MESOS_AGENT_ENDPOINT"] = "127.0.0.1:5051"
        grace_ns = task.info.get("kill_policy", {}).get("grace_period", {}).get("nanoseconds")
        if grace_ns is not None:
            task.grace = int(grace_ns) / 1e9
        self.workdir.mkdir(parents=True, exist_ok=True)
        task.log_path = self.workdir / f"{task.task_id}.log"
        with open(task.log_path, "wb") as log:
            args = (
                command["value"]
                if command.get("shell", True)
                else [command["value"], *command.get("arguments", [])[1:]]
            )
            task.proc = subprocess.Popen(
                args,
                shell=command.get("shell", True),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        task.state = "TASK_STARTING"
        self._update(task, "TASK_STARTING", "Starting")
        task.state = "TASK_RUNNING"
        self._update(task, "TASK_RUNNING", "Command started")

    def _signal(self, task: _Task, sig: int) -> None:
        if task.proc is not None and task.proc.poll() is None:
            try:
                os.killpg(task.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _offer_resources(self, agent: _Agent) -> list[dict]:
        used: dict[str, float] = {}
        used_ports: set[int] = set()
        for task in self.tasks.values():
            if task.agent is agent and task.state not in TERMINAL:
                for name in ("cpus", "mem", *agent.spec.scalars):
                    used[name] = used.get(name, 0.0) + task.uses(name)
                used_ports |= set(task.ports())
        alloc = {"allocation_info": {"role": "*"}, "role": "*"}
        totals = {"cpus": agent.spec.cpus, "mem": agent.spec.mem, **agent.spec.scalars}
        res = [
            {
                "name": name,
                "type": "SCALAR",
                "scalar": {"value": total - used.get(name, 0.0)},
                **alloc,
            }
            for name, total in totals.items()
            if total - used.get(name, 0.0) > 1e-9
        ]
        free = [p for p in agent.ports if p not in used_ports]
        if free:
            res.append(
                {"name": "ports", "type": "RANGES", "ranges": {"range": _ranges(free)}, **alloc}
            )
        return res

    def _make_offers(self, fw: _Framework, now: float) -> None:
        if fw.suppressed or fw.stream is None or fw.removed:
            return
        offered_agents = {aid for aid, _ in fw.offers.values()}
        offers = []
        for agent in self.agents.values():
            if (
                agent.lost
                or agent.agent_id in offered_agents
                or fw.filters.get(agent.agent_id, 0) > now
            ):
                continue
            resources = self._offer_resources(agent)
            if not any(r["name"] == "cpus" for r in resources):
                continue
            offer_id = f"{fw.framework_id}-O{uuid.uuid4().hex[:8]}"
            offer = {
                "id": {"value": offer_id},
                "framework_id": {"value": fw.framework_id},
                "agent_id": {"value": agent.agent_id},
                "hostname": agent.spec.hostname,
                "url": {
                    "scheme": "http",
                    "address": {"hostname": agent.spec.hostname, "ip": "127.0.0.1", "port": 5051},
                    "path": "/slave(1)",
                },
                "resources": resources,
                "attributes": [
                    {"name": k, "type": "TEXT", "text": {"value": v}}
                    for k, v in sorted(agent.spec.attributes.items())
                ],
                "allocation_info": {"role": "*"},
            }
            fw.offers[offer_id] = (agent.agent_id, resources)
            offers.append(offer)
        if offers:
            self._send(fw, {"type": "OFFERS", "offers": {"offers": offers}})
            while self._rescind_next > 0 and offers:
                self._rescind_next -= 1
                offer_id = offers.pop(0)["id"]["value"]
                fw.offers.pop(offer_id, None)
                self._send(fw, {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}})

    def _loop(self) -> None:
        next_offers = 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            with self.lock:
                for task in self.tasks.values():
                    if task.proc is None or task.state in TERMINAL:
                        continue
                    rc = task.proc.poll()
                    if rc is None:
                        if task.kill_at is not None and now - task.kill_at > task.grace:
                            self._signal(task, signal.SIGKILL)
                        continue
                    if task.kill_at is not None:
                        state, message = "TASK_KILLED", f"Command terminated by kill (rc {rc})"
                    elif rc == 0:
                        state, message = "TASK_FINISHED", "Command exited with status 0"
                    else:
                        state, message = "TASK_FAILED", f"Command exited with status {rc}"
                    task.state = state
                    task.ended_at = now
                    self._update(task, state, message)
                for fw in self.frameworks.values():
                    if fw.removed:
                        continue
                    if (
                        fw.stream is not None
                        and not fw.stream.hung
                        and now - fw.last_heartbeat >= self.heartbeat_interval
                    ):
                        fw.last_heartbeat = now
                        self._send(fw, {"type": "HEARTBEAT"})
                    timeout = float(fw.info.get("failover_timeout", 0.0))
                    if (
                        fw.stream is None
                        and fw.disconnected_at is not None
                        and now - fw.disconnected_at > timeout
                    ):
                        self._remove_framework(fw)
                if now >= next_offers:
                    next_offers = now + self.offer_interval
                    for fw in self.frameworks.values():
                        self._make_offers(fw, now)


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    explain: Callable[[], object] | None = None,
) -> object:
    """Poll ``predicate`` until it is truthy (return it) or ``timeout`` passes
    (AssertionError, with what ``explain()`` says of the state it ended in)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(0.05)
