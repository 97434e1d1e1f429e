"""First copy wins: results from redundant replicas, each delivered once.

With two replicas per shard (``mesos run --replicas 2S --shards S``) every result is
published twice, once by each replica.  A result is identified by its topic and the
input record that produced it: the ``in_stream`` and ``in_seq`` of the common result
block.  Both replicas compute the same result from the same record, and each
publishes a topic's results in input order, so a per-(topic, stream) high-water mark
is enough: a result whose ``in_seq`` is not above the mark was already delivered by the
other replica.  Memory is one entry per (topic, stream), capped (least recently used
entries go first; a result of an evicted key is delivered again, never lost).

Stats messages carry no result identity and pass through.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tickpath.engine.wire import schema as s

# offsets of the first record's in_seq and in_stream in a result frame
_IN_SEQ = s.HEADER_SIZE + s.RESULT_QUOTE.fields["in_seq"][1]
_IN_STREAM = s.HEADER_SIZE + s.RESULT_QUOTE.fields["in_stream"][1]
_MIN_RESULT = _IN_STREAM + 4


class ResultDeduplicator:
    """Deliver the first copy of each result; see the module docstring."""

    def __init__(self, max_keys: int = 1 << 20) -> None:
        self.max_keys = max_keys
        self._high: OrderedDict[tuple[bytes, int], int] = OrderedDict()
        self.delivered = 0
        self.duplicates = 0
        self.passed = 0  # messages without a result identity (stats), passed through
        self.evicted = 0

    def first_copy(self, topic: bytes, payload: bytes | memoryview | np.ndarray) -> bool:
        """True if this message is new (deliver it), False if it duplicates one delivered."""
        if len(payload) < _MIN_RESULT or topic == b"stats":
            self.passed += 1
            return True
        buf = memoryview(payload).cast("B") if not isinstance(payload, np.ndarray) else payload
        in_seq = int.from_bytes(bytes(buf[_IN_SEQ : _IN_SEQ + 8]), "little")
        in_stream = int.from_bytes(bytes(buf[_IN_STREAM : _IN_STREAM + 4]), "little")
        key = (bytes(topic), in_stream)
        high = self._high.get(key)
        if high is not None and in_seq <= high:
            self.duplicates += 1
            return False
        self._high[key] = in_seq
        self._high.move_to_end(key)
        if len(self._high) > self.max_keys:
            self._high.popitem(last=False)
            self.evicted += 1
        self.delivered += 1
        return True

    def counters(self) -> dict:
        """delivered, duplicates (dropped second copies), passed (stats), evicted keys."""
        return {
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "passed": self.passed,
            "evicted": self.evicted,
        }
