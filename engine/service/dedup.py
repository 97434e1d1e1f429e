"""First copy wins: results from redundant replicas, each delivered once.

With two replicas per shard (``mesos run --replicas 2S --shards S``) every result is
published twice, once by each replica.  A result is identified by its topic and the
input record that produced it: the ``in_stream`` and ``in_seq`` of the common result
block.  Both replicas compute the same result from the same record, and each publishes
a topic's results in input order.

The two copies come over different sockets, and nothing orders one socket's messages
against another's.  A relaunched replica starts from its twin's state at some record S
and publishes only what follows S; its twin's results up to S may still wait in the
subscriber's queue for the twin's socket when the relaunched replica's first results
are read.  A high-water mark per (topic, stream) would drop those as second copies:
they are first copies, and no other copy comes.  So the deduplicator keeps, per
(topic, stream):

* the ``in_seq`` values delivered, above a floor;
* each source's (socket's) last ``in_seq``.  A source delivers a topic in order, so no
  copy at or below the lowest of those lasts can still come from a source that has
  delivered on the key: the floor rises to it once two sources have delivered there.

A result is a second copy if its ``in_seq`` is at or below the floor, or was delivered.
Memory: at most ``window`` values per key (beyond it the oldest goes and the floor rises
to it: a copy that late counts as a second copy), and at most ``max_keys`` keys (least
recently used go first: a result of an evicted key is delivered again, never lost).
About ``max_keys * window * 70`` bytes at worst; a subscriber to S symbols' five
analytics from one stream holds ``5 * S`` keys.

Stats messages carry no result identity and pass through.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

import numpy as np

from tickpath.engine.wire import schema as s

# offsets of the first record's in_seq and in_stream in a result frame
_IN_SEQ = s.HEADER_SIZE + s.RESULT_QUOTE.fields["in_seq"][1]
_IN_STREAM = s.HEADER_SIZE + s.RESULT_QUOTE.fields["in_stream"][1]
_MIN_RESULT = _IN_STREAM + 4


class _Key:
    """What one (topic, stream) has delivered (see the module docstring)."""

    __slots__ = ("floor", "seen", "order", "last")

    def __init__(self) -> None:
        self.floor = -1  # every in_seq at or below it counts as delivered
        self.seen: set[int] = set()  # delivered, above the floor
        self.order: deque[int] = deque()  # the same values, in delivery order
        self.last: dict[Hashable, int] = {}  # source -> the last in_seq it sent here


class ResultDeduplicator:
    """Deliver the first copy of each result; see the module docstring.

    Args:
        max_keys: (topic, stream) keys kept; the least recently used goes first.
        window: delivered ``in_seq`` values kept per key above its floor.
    """

    def __init__(self, max_keys: int = 1 << 14, window: int = 128) -> None:
        self.max_keys = max_keys
        self.window = window
        self._keys: OrderedDict[tuple[bytes, int], _Key] = OrderedDict()
        self.delivered = 0
        self.duplicates = 0
        self.passed = 0  # messages without a result identity (stats), passed through
        self.evicted = 0

    def first_copy(
        self,
        topic: bytes,
        payload: bytes | memoryview | np.ndarray,
        source: Hashable = None,
    ) -> bool:
        """True if this message is new (deliver it), False if it duplicates one delivered.

        ``source``: where it came from (the subscriber's socket for that replica).
        """
        if len(payload) < _MIN_RESULT or topic == b"stats":
            self.passed += 1
            return True
        buf = memoryview(payload).cast("B") if not isinstance(payload, np.ndarray) else payload
        in_seq = int.from_bytes(bytes(buf[_IN_SEQ : _IN_SEQ + 8]), "little")
        in_stream = int.from_bytes(bytes(buf[_IN_STREAM : _IN_STREAM + 4]), "little")
        key = (bytes(topic), in_stream)
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key()
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
                self.evicted += 1
        else:
            self._keys.move_to_end(key)
        new = in_seq > entry.floor and in_seq not in entry.seen
        if new:
            entry.seen.add(in_seq)
            entry.order.append(in_seq)
            self.delivered += 1
        else:
            self.duplicates += 1
        entry.last[source] = in_seq
        if len(entry.last) >= 2:
            entry.floor = max(entry.floor, min(entry.last.values()))
        if len(entry.order) > self.window:
            entry.floor = max(entry.floor, entry.order[0])
            # a source that far behind has stopped (a dead replica): it no longer holds
            # the floor down; it is counted again from its next message
            for gone in [src for src, seq in entry.last.items() if seq < entry.floor]:
                del entry.last[gone]
        order, seen, floor = entry.order, entry.seen, entry.floor
        while order and order[0] <= floor:
            seen.discard(order.popleft())
        return new

    def counters(self) -> dict:
        """delivered, duplicates (dropped second copies), passed (stats), evicted keys."""
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "passed": self.passed,
            "evicted": self.evicted,
        }
