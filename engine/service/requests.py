"""The request/reply endpoint: batch jobs from clients over a ZeroMQ ROUTER socket.

``tickpath serve --requests ENDPOINT`` binds a ROUTER socket, in a process of its own
(engine.service.request_process: nothing here runs in the engine's process). A client (REQ,
or DEALER sending an empty delimiter frame first) sends one request per message, JSON or
msgpack, and gets one reply in the same encoding. Formats and examples: docs/dispatch.md.
A JSON body longer than ``max_json_bytes`` is answered ``too_large`` before any decoding
(large arrays go as msgpack ``bin``); libzmq drops a message over ``max_message_bytes``.

Request types (field ``type``): ``price_chain`` (Black-Scholes prices and greeks of a
list of contracts), ``iv_surface`` (implied vols of a strikes x expiries grid of option
prices), ``var`` (Monte Carlo VaR and expected shortfall of a portfolio). Decoding is
strict (msgspec structs: unknown fields, missing fields and wrong types are errors) and
runs on the request lane's worker thread, not the engine thread; so does validation.

What the endpoint's thread does per request: receive it, check the envelope and the JSON
length, queue it (a full queue is answered ``busy`` at once), and later send the reply the
worker made. A
malformed request costs one error reply and a counter; it never reaches a kernel.

Error codes: ``malformed`` (not JSON/msgpack, not a known request, wrong types, unknown
fields, more than one body frame), ``invalid`` (values out of range, lengths that do not
broadcast), ``too_large`` (more than ``max_items`` work items), ``busy`` (queue full),
``expired`` (its deadline passed before a worker could start it), ``failed`` (no
backend, the CPU included, produced a result), ``shutdown``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Annotated, Any

import msgspec
import numpy as np
import zmq

from tickpath.engine.config import ConnectionsConfig
from tickpath.engine.dispatch.jobs import Job, JobRejected, Outcome, non_finite
from tickpath.engine.security.guard import apply_connection_options

ROUTE_REPLY = b"R"

# Arrays as lists are for small requests: a longer list is refused while decoding (msgpack
# gives the length first, so it is refused before its items are read); large arrays travel
# as msgpack bin (raw bytes that np.frombuffer wraps without a copy).
MAX_LIST_ITEMS = 100_000
MAX_MATRIX_SIDE = 1024  # a correlation matrix as a list of lists: at most this many rows/cols
_List = Annotated[list[float], msgspec.Meta(max_length=MAX_LIST_ITEMS)]
_Row = Annotated[list[float], msgspec.Meta(max_length=MAX_MATRIX_SIDE)]
FloatArray = _List | bytes  # bytes: little-endian float64
BoolArray = Annotated[list[bool], msgspec.Meta(max_length=MAX_LIST_ITEMS)] | bytes  # or 1 B each
Matrix = Annotated[list[_Row], msgspec.Meta(max_length=MAX_MATRIX_SIDE)] | bytes


class _Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    id: str | int | None = None  # echoed in the reply
    deadline_ms: float | None = None  # from receipt; default: the request lane's deadline_ms
    backend: str | None = None  # ask for a backend by name (cpu on failure); default: route


class PriceChainRequest(_Request, tag="price_chain"):
    """Prices and greeks of n contracts on one underlying (arrays of length 1 or n)."""

    spot: float
    strike: float | FloatArray
    expiry: float | FloatArray  # years
    vol: float | FloatArray
    call: bool | BoolArray
    rate: float = 0.0
    dividend: float = 0.0
    greeks: bool = True  # False: prices only (faster, a sixth of the reply)


class IVSurfaceRequest(_Request, tag="iv_surface"):
    """Implied vols of option prices on a grid: ``prices[e * len(strikes) + s]``."""

    spot: float
    strikes: FloatArray
    expiries: FloatArray  # years
    prices: FloatArray  # row-major: one row of strikes per expiry
    call: bool | BoolArray = True
    rate: float = 0.0
    dividend: float = 0.0


class VaRRequest(_Request, tag="var"):
    """Monte Carlo VaR/ES of positions in N correlated assets (GBM over the horizon)."""

    spot: FloatArray
    position: FloatArray  # units held (negative: short)
    vol: FloatArray
    correlation: Matrix  # N x N (bytes: row-major float64)
    horizon: float  # years
    confidence: float = 0.99
    n_scenarios: int = 100_000
    seed: int = 0
    drift: float = 0.0


Request = PriceChainRequest | IVSurfaceRequest | VaRRequest
ANALYTIC_OF_REQUEST = {
    PriceChainRequest: "chain",
    IVSurfaceRequest: "iv_surface",
    VaRRequest: "var",
}

_JSON_DECODER = msgspec.json.Decoder(Request)
_MSGPACK_DECODER = msgspec.msgpack.Decoder(Request)
_JSON_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()


def body_format(body: Any) -> str:
    """``"json"`` when the body starts (after whitespace) with ``{``, else ``"msgpack"``."""
    head = bytes(memoryview(body)[:16]).lstrip()
    return "json" if head[:1] == b"{" else "msgpack"


def decode_request(body: Any) -> tuple[Request, str]:
    """Decode one request strictly; raises `JobRejected` (``malformed``) with the reason."""
    fmt = body_format(body)
    decoder = _JSON_DECODER if fmt == "json" else _MSGPACK_DECODER
    what = "json" if fmt == "json" else "msgpack (a body not starting with '{' is read as msgpack)"
    try:
        return decoder.decode(body), fmt
    except msgspec.ValidationError as exc:
        hint = " (send large arrays as msgpack bin)" if "of length <=" in str(exc) else ""
        raise JobRejected("malformed", f"{what} request: {exc}{hint}") from None
    except msgspec.DecodeError as exc:
        raise JobRejected("malformed", f"not a valid {what} message: {exc}") from None
    except UnicodeDecodeError as exc:  # a msgpack str that is not UTF-8
        reason = f"{what} request: a string is not UTF-8 ({exc.reason})"
        raise JobRejected("malformed", reason) from None
    except RecursionError:  # e.g. 200,000 nested objects before the type tag
        raise JobRejected("malformed", f"{what} request: nested too deeply") from None


# --------------------------------------------------------------------------- validation


def _floats(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) % 8:
            raise JobRejected("invalid", f"{name}: {len(value)} bytes is not whole float64s")
        array = np.frombuffer(value, "<f8").astype(np.float64)
    elif isinstance(value, list):
        array = np.asarray(value, np.float64)
    else:
        array = np.array([value], np.float64)
    if array.ndim != 1:
        raise JobRejected("invalid", f"{name} must be a flat list of numbers")
    if not np.all(np.isfinite(array)):
        raise JobRejected("invalid", f"{name} must be finite numbers")
    return array


def _bools(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(value, np.uint8)
        if np.any(raw > 1):
            raise JobRejected("invalid", f"{name}: bytes must be 0 or 1")
        return raw.astype(np.bool_)
    if isinstance(value, list):
        return np.asarray(value, np.bool_)
    return np.array([value], np.bool_)


def _broadcast(names: tuple[str, ...], arrays: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
    n = max(a.size for a in arrays)
    for name, a in zip(names, arrays):
        if a.size not in (1, n):
            sizes = ", ".join(f"{nm}[{x.size}]" for nm, x in zip(names, arrays))
            raise JobRejected("invalid", f"lengths do not broadcast: {sizes}")
        if a.size == 0:
            raise JobRejected("invalid", f"{name} is empty")
    return n, arrays


def _scalar(name: str, value: float, low: float | None = None, strict: bool = True) -> float:
    if not np.isfinite(value):
        raise JobRejected("invalid", f"{name} must be finite")
    if low is not None and (value <= low if strict else value < low):
        raise JobRejected("invalid", f"{name} must be {'>' if strict else '>='} {low}")
    return float(value)


class RequestJob(Job):
    """One client request: decoded, validated and computed on a request-lane worker."""

    def __init__(self, endpoint: RequestEndpoint, envelope: list[bytes], body: Any) -> None:
        self.endpoint = endpoint
        self.envelope = envelope
        self.body = body  # a zmq.Frame buffer (kept alive by the frame) or bytes
        self.fmt = body_format(body)
        self.received_ns = time.monotonic_ns()
        self.request: Request | None = None
        self.inputs: dict[str, Any] = {}
        self.analytic = "chain"
        self.size = 1
        self.shape = None
        self.key = None
        self.deadline_ns = 0
        self.backend: str | None = None

    # -- worker thread ------------------------------------------------------------------

    def prepare(self) -> None:
        """Decode, validate, size the job; raises `JobRejected` with the reply's code."""
        request, self.fmt = decode_request(self.body)
        self.body = None  # the frame can go
        self.request = request
        self.analytic = ANALYTIC_OF_REQUEST[type(request)]
        self.backend = request.backend
        if request.deadline_ms is not None:
            if not (np.isfinite(request.deadline_ms) and 0 < request.deadline_ms <= 86_400_000):
                raise JobRejected("invalid", "deadline_ms must be in (0, 86400000]")
            self.deadline_ns = self.received_ns + int(request.deadline_ms * 1e6)
            if time.monotonic_ns() > self.deadline_ns:
                raise JobRejected("expired", "deadline passed before the job could start")
        if request.backend is not None and self.endpoint.registry_get(request.backend) is None:
            raise JobRejected("invalid", f"no backend named {request.backend!r}")
        limit = self.endpoint.max_items
        if isinstance(request, PriceChainRequest):
            spot = _scalar("spot", request.spot, 0.0)
            names = ("strike", "expiry", "vol", "call")
            arrays = [
                _floats("strike", request.strike),
                _floats("expiry", request.expiry),
                _floats("vol", request.vol),
                _bools("call", request.call),
            ]
            n, (K, T, vol, call) = _broadcast(names, arrays)
            if n > limit:
                raise JobRejected("too_large", f"{n:,} contracts > max_items {limit:,}")
            if np.any(K <= 0) or np.any(T < 0) or np.any(vol < 0):
                raise JobRejected("invalid", "strike must be > 0, expiry >= 0 and vol >= 0")
            self.size = n
            self.inputs = dict(
                S=spot, K=K, T=T, r=_scalar("rate", request.rate),
                q=_scalar("dividend", request.dividend), sigma=vol, is_call=call,
                greeks=request.greeks,
            )  # fmt: skip
        elif isinstance(request, IVSurfaceRequest):
            spot = _scalar("spot", request.spot, 0.0)
            strikes = _floats("strikes", request.strikes)
            expiries = _floats("expiries", request.expiries)
            prices = _floats("prices", request.prices)
            n = strikes.size * expiries.size
            if n == 0:
                raise JobRejected("invalid", "strikes and expiries must not be empty")
            if n > limit:
                raise JobRejected("too_large", f"{n:,} grid points > max_items {limit:,}")
            if prices.size != n:
                raise JobRejected(
                    "invalid",
                    f"prices has {prices.size} values, the grid {expiries.size} x "
                    f"{strikes.size} = {n}",
                )
            call = _bools("call", request.call)
            if call.size not in (1, n):
                raise JobRejected("invalid", f"call must have 1 or {n} values")
            if np.any(strikes <= 0) or np.any(expiries < 0):
                raise JobRejected("invalid", "strikes must be > 0 and expiries >= 0")
            self.size = n
            self.inputs = dict(
                price=prices, S=spot, K=np.tile(strikes, expiries.size),
                T=np.repeat(expiries, strikes.size), r=_scalar("rate", request.rate),
                q=_scalar("dividend", request.dividend), is_call=call,
                shape=(expiries.size, strikes.size),
            )  # fmt: skip
        else:
            self._prepare_var(request, limit)

    def _prepare_var(self, request: VaRRequest, limit: int) -> None:
        spot = _floats("spot", request.spot)
        position = _floats("position", request.position)
        vol = _floats("vol", request.vol)
        n = spot.size
        if position.size != n or vol.size != n or n == 0:
            raise JobRejected(
                "invalid", f"spot, position and vol need one length, got {n}, "
                f"{position.size}, {vol.size}",
            )  # fmt: skip
        if isinstance(request.correlation, list):
            rows = request.correlation
            if len(rows) != n or any(len(row) != n for row in rows):
                raise JobRejected("invalid", f"correlation must be {n} x {n}")
            corr = np.asarray(rows, np.float64)
        else:
            corr = _floats("correlation", request.correlation)
            if corr.size != n * n:
                raise JobRejected("invalid", f"correlation must hold {n} x {n} values")
            corr = corr.reshape(n, n)
        if not np.all(np.isfinite(corr)):
            raise JobRejected("invalid", "correlation must be finite")
        if not np.allclose(corr, corr.T) or not np.allclose(np.diag(corr), 1.0):
            raise JobRejected("invalid", "correlation must be symmetric with a unit diagonal")
        try:
            np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise JobRejected("invalid", "correlation is not positive definite") from None
        if np.any(spot <= 0) or np.any(vol < 0):
            raise JobRejected("invalid", "spot must be > 0 and vol >= 0")
        if not 1 <= request.n_scenarios:
            raise JobRejected("invalid", "n_scenarios must be >= 1")
        if request.n_scenarios * n > limit:
            raise JobRejected(
                "too_large", f"{request.n_scenarios:,} scenarios x {n} assets > max_items {limit:,}"
            )
        if not 0.0 < request.confidence < 1.0:
            raise JobRejected("invalid", "confidence must be in (0, 1)")
        if not 0 <= request.seed < 1 << 64:
            raise JobRejected("invalid", "seed must be in 0..2**64-1")
        self.size = request.n_scenarios * n
        self.shape = {"assets": n}
        self.inputs = dict(
            spot=spot, position=position, vol=vol, correlation=corr,
            horizon=_scalar("horizon", request.horizon, 0.0), confidence=request.confidence,
            drift=_scalar("drift", request.drift), n_scenarios=request.n_scenarios,
            seed=request.seed,
        )  # fmt: skip

    def compute(self, backend: Any) -> dict[str, Any]:
        """Run the request's kernel on `backend`."""
        x = self.inputs
        if self.analytic == "chain":
            args = (x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], x["is_call"])
            if not x["greeks"]:
                return {"price": np.asarray(backend.black_scholes_price(*args))}
            res = backend.black_scholes(*args)
            return {f: np.asarray(getattr(res, f)) for f in _GREEKS}
        if self.analytic == "iv_surface":
            sigma = backend.implied_vol(
                x["price"], x["S"], x["K"], x["T"], x["r"], x["q"], x["is_call"]
            )
            return {"sigma": np.asarray(sigma).reshape(x["shape"])}
        res = backend.portfolio_var(**x)
        return {
            "var": float(res.var),
            "expected_shortfall": float(res.expected_shortfall),
            "confidence": float(res.confidence),
            "n_scenarios": int(res.n_scenarios),
        }

    def check(self, result: dict[str, Any]) -> str | None:
        """Finite prices/greeks and VaR; implied vols finite and >= 0, or NaN (no vol)."""
        if self.analytic == "chain":
            return non_finite("black_scholes", *result.values())
        if self.analytic == "iv_surface":
            sigma = result["sigma"]
            bad = int(np.count_nonzero(np.isinf(sigma) | (sigma < 0)))
            return f"implied_vol: {bad} infinite or negative value(s)" if bad else None
        return non_finite("portfolio_var", result["var"], result["expected_shortfall"])

    def finish(self, outcome: Outcome) -> None:
        """Encode the reply (result or error) and hand it to the engine thread."""
        request_id = self.request.id if self.request is not None else None
        if outcome.ok:
            reply = {
                "id": request_id,
                "ok": True,
                "type": type(self.request).__struct_config__.tag,
                "backend": outcome.backend,
                "routed": outcome.routed,
                "fallback": outcome.fallback_reason or None,
                "late": outcome.late,
                "queued_us": round(outcome.queued_ns / 1e3, 1),
                "compute_us": round(outcome.compute_ns / 1e3, 1),
                "result": _encode_result(outcome.result, self.fmt),
            }
        else:
            reply = error_reply(request_id, outcome.error_code or "failed", outcome.error)
        self.endpoint.count(reply)
        if self.fmt == "json":
            body = _JSON_ENCODER.encode(reply)
        else:
            body = encode_msgpack_map(reply)
        self.endpoint.send_from_worker([*self.envelope, body])


_GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")


def _encode_result(result: dict[str, Any], fmt: str) -> dict[str, Any]:
    out = {}
    for name, value in result.items():
        if isinstance(value, np.ndarray):
            if fmt == "json":
                out[name] = value.tolist()
            else:
                out[name] = np.ascontiguousarray(value, "<f8")  # bin, by encode_msgpack_map
                if value.ndim > 1:
                    out[f"{name}_shape"] = list(value.shape)
        else:
            out[name] = value
    if "sigma" in result:
        out["n_nan"] = int(np.count_nonzero(np.isnan(result["sigma"])))
        out["shape"] = list(np.shape(result["sigma"]))
    return out


def _msgpack_parts(value: Any, parts: list) -> None:
    """Append the msgpack encoding of `value` to `parts`: bytes, or arrays to copy as bin."""
    if isinstance(value, dict):
        n = len(value)
        parts.append(bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big"))
        for key, item in value.items():
            parts.append(_MSGPACK_ENCODER.encode(key))
            _msgpack_parts(item, parts)
    elif isinstance(value, np.ndarray):
        raw = value.reshape(-1).view(np.uint8)
        parts.append(b"\xc6" + raw.size.to_bytes(4, "big"))  # bin 32
        parts.append(raw)
    else:
        parts.append(_MSGPACK_ENCODER.encode(value))


def encode_msgpack_map(reply: dict[str, Any]) -> np.ndarray:
    """`reply` as msgpack, numpy arrays as ``bin``, in one uint8 buffer.

    The arrays are copied by numpy (which releases the GIL for large copies) straight into
    the message, instead of through ``bytes`` objects and the encoder's own buffer: so a
    worker encoding a reply of millions of values does not hold up the engine thread.
    """
    parts: list = []
    _msgpack_parts(reply, parts)
    out = np.empty(sum(len(p) if isinstance(p, bytes) else p.size for p in parts), np.uint8)
    at = 0
    for part in parts:
        size = len(part) if isinstance(part, bytes) else part.size
        out[at : at + size] = np.frombuffer(part, np.uint8) if isinstance(part, bytes) else part
        at += size
    return out


def error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    """The reply to a request that produced no result."""
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


# --------------------------------------------------------------------------- the endpoint


class RequestEndpoint:
    """Engine extension: the ROUTER socket; jobs go to the milli path's request lane."""

    name = "requests"

    def __init__(self, milli: Any, endpoint: str | None = None) -> None:
        self.milli = milli
        cfg = milli.config.requests
        self.endpoint = endpoint or cfg.endpoint
        if self.endpoint is None:
            raise ValueError("RequestEndpoint needs an endpoint (dispatch.requests.endpoint)")
        self.max_items = cfg.max_items
        self.max_message_bytes = cfg.max_message_bytes
        self.max_json_bytes = cfg.max_json_bytes
        self.receive_buffer_bytes = cfg.receive_buffer_bytes
        self.send_buffer_bytes = cfg.send_buffer_bytes
        milli.serve_requests = True
        self.on_count: Any = None  # called after each counted reply (the request process)
        self.socket: zmq.Socket | None = None
        self.bound = ""
        self._lock = threading.Lock()
        self.counters = {"received": 0, "replied_ok": 0, "replied_error": 0}
        self.errors: dict[str, int] = {}

    def registry_get(self, name: str) -> Any:
        """The milli path's backend called `name` (None if there is none)."""
        return self.milli.registry.get(name)

    def on_start(self, engine: Any) -> None:
        """Bind the ROUTER; register the reply route on the milli path's pipe."""
        if self.milli.dispatcher is None:
            raise RuntimeError("the request endpoint needs the milli path: list it first")
        self.socket = engine.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # heartbeats, handshake deadline, and small kernel buffers per client
        connections = getattr(engine.config, "connections", None) or ConnectionsConfig()
        apply_connection_options(
            self.socket, connections, self.receive_buffer_bytes, self.send_buffer_bytes
        )
        security = getattr(engine.config, "security", None)
        if security is not None and getattr(security, "curve", False):
            from tickpath.engine.security.curve import apply_curve_server

            apply_curve_server(self.socket, security)  # CURVE like every other endpoint
        self.socket.bind(self.endpoint)
        self.bound = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.milli.add_route(ROUTE_REPLY, self._send_reply)
        logging.getLogger("tickpath.dispatch").info(
            "requests: ROUTER %s (price_chain, iv_surface, var; JSON or msgpack)", self.bound
        )

    def sockets(self) -> list[tuple[zmq.Socket, Any]]:
        """The ROUTER socket."""
        return [(self.socket, self._on_readable)] if self.socket is not None else []

    def count(self, reply: dict[str, Any]) -> None:
        """Count a reply (any thread)."""
        with self._lock:
            if reply.get("ok"):
                self.counters["replied_ok"] += 1
            else:
                code = reply["error"]["code"]
                self.counters["replied_error"] += 1
                self.errors[code] = self.errors.get(code, 0) + 1
        if self.on_count is not None:
            self.on_count()

    def send_from_worker(self, parts: list[Any]) -> None:
        """A worker's finished reply, to be sent by the engine thread."""
        if not self.milli.send_to_engine(ROUTE_REPLY, parts):
            with self._lock:
                self.errors["reply_dropped"] = self.errors.get("reply_dropped", 0) + 1

    def _send_reply(self, parts: list[zmq.Frame]) -> None:
        """Engine thread: one reply out of the ROUTER."""
        try:
            self.socket.send_multipart(parts, copy=False)
        except zmq.ZMQError:  # the client left; nothing to answer to
            with self._lock:
                self.errors["client_gone"] = self.errors.get("client_gone", 0) + 1

    def _reply_now(self, envelope: list[bytes], fmt: str, reply: dict[str, Any]) -> None:
        self.count(reply)
        body = (_JSON_ENCODER if fmt == "json" else _MSGPACK_ENCODER).encode(reply)
        self._send_reply([*envelope, body])

    def _on_readable(self, engine: Any) -> None:
        """Engine thread: take waiting requests, queue them (or answer at once)."""
        for _ in range(64):
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            with self._lock:
                self.counters["received"] += 1
            identity = parts[0].bytes
            rest = parts[1:]
            envelope = [identity]
            if rest and len(rest[0]) == 0:  # REQ-style empty delimiter
                envelope.append(b"")
                rest = rest[1:]
            if len(rest) != 1:
                self._reply_now(envelope, "json", error_reply(
                    None, "malformed", f"expected one body frame after the envelope, "
                    f"got {len(rest)}",
                ))  # fmt: skip
                continue
            body = rest[0].buffer
            fmt = body_format(body)
            if fmt == "json" and len(body) > self.max_json_bytes:  # refused before decoding
                self._reply_now(envelope, "json", error_reply(
                    None, "too_large", f"JSON body of {len(body):,} bytes > max_json_bytes "
                    f"{self.max_json_bytes:,}: send large arrays as msgpack bin",
                ))  # fmt: skip
                continue
            job = RequestJob(self, envelope, body)
            if not self.milli.submit(job, "requests"):
                lane = self.milli.config.lanes.requests
                self._reply_now(envelope, job.fmt, error_reply(
                    None, "busy", f"request queue full ({lane.capacity} queued): retry later",
                ))  # fmt: skip

    def stats(self) -> dict:
        """Requests received, replies by outcome, errors by code."""
        with self._lock:
            return {**self.counters, "errors": dict(self.errors), "endpoint": self.bound}

    def close(self) -> None:
        """Close the ROUTER socket."""
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None


# --------------------------------------------------------------------------- client


def _enc_hook(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return value.astype(np.uint8).tobytes()
        return np.ascontiguousarray(value, "<f8").tobytes()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_request(job: dict[str, Any], use_msgpack: bool = False) -> bytes:
    """A request dict as JSON, or msgpack with numpy arrays as raw float64/uint8 bytes."""
    if use_msgpack:
        return msgspec.msgpack.encode(job, enc_hook=_enc_hook)

    def as_lists(value: Any) -> Any:
        return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value

    return msgspec.json.encode({k: as_lists(v) for k, v in job.items()})


def decode_reply(body: bytes) -> dict[str, Any]:
    """A reply as a dict; in msgpack replies, raw float64 arrays become numpy arrays."""
    if body_format(body) == "json":
        return msgspec.json.decode(body)
    reply = msgspec.msgpack.decode(body)
    result = reply.get("result")
    if isinstance(result, dict):
        for name, value in list(result.items()):
            if isinstance(value, bytes):
                array = np.frombuffer(value, "<f8")
                shape = result.get(f"{name}_shape")
                result[name] = array.reshape(shape) if shape else array
    return reply


def request(
    endpoint: str,
    job: dict[str, Any] | bytes,
    *,
    timeout_s: float = 30.0,
    use_msgpack: bool = False,
    context: zmq.Context | None = None,
) -> dict[str, Any]:
    """Send one request to `endpoint`, wait for the reply; raises TimeoutError."""
    body = job if isinstance(job, bytes) else encode_request(job, use_msgpack)
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"", body])
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no reply from {endpoint} within {timeout_s:g} s")
        parts = sock.recv_multipart()
        return decode_reply(parts[-1])
    finally:
        sock.close(linger=0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``tickpath request``."""
    p.add_argument("--endpoint", required=True, metavar="ENDPOINT", help="the engine's "
                   "request endpoint (serve --requests)")  # fmt: skip
    p.add_argument("--file", required=True, metavar="FILE", help="the request, as JSON "
                   "('-' for stdin)")  # fmt: skip
    p.add_argument("--msgpack", action="store_true", help="send it as msgpack (the reply "
                   "comes back as msgpack; printed as JSON)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=30.0, metavar="S")


def request_main(args: argparse.Namespace) -> int:
    """``tickpath request``: print the reply as one JSON line; 0 if ok, 1 otherwise."""
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    except OSError as exc:
        print(f"tickpath request: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        job = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"tickpath request: error: {args.file} is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        reply = request(args.endpoint, job, timeout_s=args.timeout, use_msgpack=args.msgpack)
    except TimeoutError as exc:
        print(f"tickpath request: error: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(_jsonable(reply)).decode())
    return 0 if reply.get("ok") else 1
