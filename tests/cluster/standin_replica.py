"""A stand-in replica process: binds SUB on --ingest and PUB on --publish, forwards frames.

The Mesos tests run it in place of ``tickpath serve`` where only the scheduling
matters; it keeps the same command-line shape and socket roles, exits 0 on SIGTERM
(so a KILL ends as TASK_KILLED) and prints ``ready`` once both sockets are bound.
"""

from __future__ import annotations

import argparse
import signal
import sys

import zmq


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ingest", required=True)
    parser.add_argument("--publish", required=True)
    parser.add_argument("--symbols-shard", default="0/1")
    args = parser.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(args.ingest)
    pub = ctx.socket(zmq.PUB)
    pub.bind(args.publish)
    print("ready", args.ingest, args.publish, args.symbols_shard, flush=True)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while not stop:
        if poller.poll(100):
            pub.send(sub.recv())
    sub.close(0)
    pub.close(0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
