"""The CURVE allow-list check (ZAP) of the engine's own sockets, in a process of its own.

libzmq asks ``inproc://zeromq.zap.01`` of a socket's context whether a CURVE client may
in. A Python handler there (pyzmq's ``ThreadAuthenticator``) is a thread of the engine's
process: every handshake's check, log line and counter holds the engine's GIL, so a flood
of refused handshakes slows the tick thread. Here the engine's context gets a plain
``zmq.proxy`` at that address instead (C code that never takes the GIL), forwarding each
ZAP request over a private ipc socket to a child process, where the unchanged
`CurveAuthenticator` answers it::

    engine process                                   ZAP process (python -m this module)
    libzmq ZAP client -> ROUTER inproc://zeromq.zap.01
                         zmq.proxy (nogil thread)
                         DEALER --ipc (0700 dir)--> ROUTER -> zmq.proxy -> DEALER
                                                    -> inproc://zeromq.zap.01: CurveAuthenticator
    ZapProcess.<counter>  <-- shared-memory slot --  its public counters, after every check
    log records           <-- stdout, JSON lines --  its log records (re-emitted by a thread)

`ZapProcess` stands in for `CurveAuthenticator` in `SecurityExtension`: its public
attributes (``allowed``, ``denied``, and whatever counters the authenticator has) are the
child's, read from the snapshot it writes after each check. The child re-reads the allow
directory every `RELOAD_S` by itself (``reload()`` here only restarts a dead child). If
the child dies, handshakes wait (libzmq's handshake timeout refuses them: fail closed)
until the next ``reload()`` starts a new one on the same ipc path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import msgspec
import zmq

from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.guard import bind_zap_endpoint
from tickpath.engine.service.child_process import lower_priority
from tickpath.engine.service.stats_slot import StatsSlot

log = logging.getLogger("tickpath.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
READY_TIMEOUT_S = 120.0
RELOAD_S = 0.25
NICE = 5  # below the engine: a handshake may wait, a tick should not
RELAY_PER_S = 20.0  # log lines of the child re-emitted in the engine, per second
RELAY_BURST = 50


class ZapProcess:
    """The engine context's ZAP handler, run in a child process (see the module doc)."""

    def __init__(self, context: zmq.Context, security: SecurityConfig) -> None:
        self.security = security
        self._dir = tempfile.mkdtemp(prefix="tickpath-zap-")  # mode 0700: only us
        self.endpoint = f"ipc://{self._dir}/zap"
        self.slot = StatsSlot.create()
        self.restarts = 0
        self._snapshot: dict = {}
        self._ready = threading.Event()
        self._error = ""
        self._closing = False
        self.proc: subprocess.Popen | None = None
        self._spawn()
        if not self._ready.wait(READY_TIMEOUT_S) or self._error:
            self.stop()
            raise RuntimeError(f"the ZAP process did not start: {self._error or 'timeout'}")
        # the engine side: a proxy in C from libzmq's ZAP requests to the child
        self._front = context.socket(zmq.ROUTER)
        self._front.setsockopt(zmq.LINGER, 0)
        bind_zap_endpoint(self._front)  # waits while a just-closed handler still holds it
        self._back = context.socket(zmq.DEALER)
        self._back.setsockopt(zmq.LINGER, 0)
        self._back.connect(self.endpoint)
        control = f"inproc://tickpath-zap-control-{id(self):x}"
        self._control_in = context.socket(zmq.PAIR)
        self._control_in.bind(control)
        self._control_out = context.socket(zmq.PAIR)
        self._control_out.connect(control)
        self._proxy = threading.Thread(target=self._run_proxy, name="tickpath-zap-proxy",
                                       daemon=True)  # fmt: skip
        self._proxy.start()
        log.info("CURVE allow-list checks in process %d (ZAP proxy %s)", self.proc.pid,
                 self.endpoint)  # fmt: skip

    def _run_proxy(self) -> None:
        try:
            zmq.proxy_steerable(self._front, self._back, None, self._control_in)
        except zmq.ZMQError:  # the context is being terminated
            pass

    def _spawn(self) -> None:
        self._ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickpath.engine.security.zap_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(self.slot.fd,),
        )  # fmt: skip
        start = {
            "security": msgspec.json.encode(self.security).decode(),
            "endpoint": self.endpoint,
            "stats_fd": self.slot.fd,
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        self.proc.stdin.write(json.dumps(start).encode() + b"\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._relay, args=(self.proc,), name="tickpath-zap-log",
                         daemon=True).start()  # fmt: skip

    def _relay(self, proc: subprocess.Popen) -> None:
        """The child's stdout: its ready line, then its log records, re-emitted here at
        most `RELAY_PER_S` a second (a flood of refusals must not flood the engine's GIL;
        the skipped ones are counted in one line)."""
        tokens, last, skipped = float(RELAY_BURST), time.monotonic(), 0
        for line in proc.stdout:
            now = time.monotonic()
            tokens = min(RELAY_BURST, tokens + (now - last) * RELAY_PER_S)
            last = now
            if tokens < 1 and b'"log"' in line[:8]:
                skipped += 1
                continue
            if skipped and tokens >= 2:
                log.warning("%d log lines of the ZAP process not repeated here", skipped)
                tokens -= 1
                skipped = 0
            tokens -= 1
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if "ready" in item:
                self._ready.set()
            elif "error" in item:
                self._error = item["error"]
                self._ready.set()
            elif "log" in item:
                name, level, message = item["log"]
                logging.getLogger(name).log(level, "%s", message)

    def __getattr__(self, name: str) -> Any:
        """The child authenticator's public counters (``allowed``, ``denied``, ...)."""
        if name.startswith("_"):
            raise AttributeError(name)
        slot = self.__dict__.get("slot")
        data = slot.read() if slot is not None else None
        if data:
            try:
                self._snapshot = msgspec.msgpack.decode(data)
            except msgspec.DecodeError:
                pass
        if name in self._snapshot:
            return self._snapshot[name]
        raise AttributeError(name)

    def reload(self) -> bool:
        """The child re-reads the allow directory itself; here: restart it if it died."""
        if self._closing or self.proc is None or self.proc.poll() is None:
            return False
        self.restarts += 1
        log.error("the ZAP process exited with status %s: starting it again",
                  self.proc.returncode)  # fmt: skip
        self.proc.stdin.close()
        self._spawn()
        return False

    def stop(self) -> None:
        """Stop the proxy and the child."""
        self._closing = True
        if "_control_out" in self.__dict__:
            self._control_out.send(b"TERMINATE")
            self._proxy.join(5)
            for sock in (self._control_out, self._control_in, self._front, self._back):
                sock.close(linger=0)
            del self._control_out
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        if self.slot is not None:
            self.slot.close()
            self.slot = None
        shutil.rmtree(self._dir, ignore_errors=True)


# --------------------------------------------------------------------------- child side


class _JsonLines(logging.Handler):
    """Log records as JSON lines on stdout, for the engine to re-emit."""

    def __init__(self) -> None:
        super().__init__()
        self._lock_out = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.dumps({"log": [record.name, record.levelno, record.getMessage()]})
        with self._lock_out:
            os.write(1, line.encode() + b"\n")


def _serve(start: dict) -> int:
    from tickpath.engine.security.curve import CurveAuthenticator

    security = msgspec.json.decode(start["security"].encode(), type=SecurityConfig)
    root = logging.getLogger()
    root.addHandler(_JsonLines())
    root.setLevel(start.get("log_level", logging.INFO))
    lower_priority(NICE, False, "the ZAP process")
    slot = StatsSlot(start["stats_fd"])
    context = zmq.Context()
    auth = CurveAuthenticator(context, security)
    lock = threading.Lock()

    def publish() -> None:
        snap = {
            k: v for k, v in vars(auth).items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str, dict, list))
        }  # fmt: skip
        with lock:
            try:
                slot.write(msgspec.msgpack.encode(snap))
            except (TypeError, msgspec.EncodeError):
                pass

    check = auth.callback

    def callback(domain: str, key: bytes) -> bool:
        ok = check(domain, key)
        publish()  # before the answer: the engine's stats already count this handshake
        return ok

    auth.callback = callback  # pyzmq looks the method up on every request
    front = context.socket(zmq.ROUTER)
    front.setsockopt(zmq.LINGER, 0)
    front.bind(start["endpoint"])
    back = context.socket(zmq.DEALER)
    back.setsockopt(zmq.LINGER, 0)
    back.connect(ZAP_ENDPOINT)
    control_in = context.socket(zmq.PAIR)
    control_in.bind("inproc://tickpath-zap-control")
    control_out = context.socket(zmq.PAIR)
    control_out.connect("inproc://tickpath-zap-control")

    def run_proxy() -> None:
        try:
            zmq.proxy_steerable(front, back, None, control_in)
        except zmq.ZMQError:
            pass

    proxy = threading.Thread(target=run_proxy, daemon=True)
    proxy.start()
    publish()
    os.write(1, json.dumps({"ready": os.getpid()}).encode() + b"\n")
    poller = zmq.Poller()
    poller.register(0, zmq.POLLIN)
    try:
        while True:
            if poller.poll(int(RELOAD_S * 1000)) and not os.read(0, 4096):
                break  # EOF: the engine closed our stdin, or died
            try:
                if auth.reload():
                    publish()
            except Exception:  # a transient directory problem must not stop the checks
                log.exception("reloading the CURVE allow-list failed")
    finally:
        control_out.send(b"TERMINATE")
        proxy.join(5)
        for sock in (control_out, control_in, front, back):
            sock.close(linger=0)
        auth.stop()
        context.term()
        slot.close()
    return 0


def main() -> int:
    """Entry point of the ZAP process (started by `ZapProcess`)."""
    line = sys.stdin.buffer.readline()
    if not line:
        return 0
    try:
        return _serve(json.loads(line))
    except Exception as exc:  # reported to the engine, which refuses to start
        try:
            os.write(1, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
