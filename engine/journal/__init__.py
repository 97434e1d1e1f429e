"""Reliability: a write-ahead journal of received frames, snapshots, recovery and replay.

Modelled on kdb+'s tickerplant: every frame is logged before it is processed,
and any state is rebuilt by replaying the log (from a snapshot).

* :mod:`tickpath.engine.journal.format`: segment and entry layout, checksums;
* :mod:`tickpath.engine.journal.writer`: appending under a sync policy;
* :mod:`tickpath.engine.journal.reader`: torn-tail repair, verified iteration;
* :mod:`tickpath.engine.journal.snapshot`: atomic snapshots of the whole state;
* :mod:`tickpath.engine.journal.recovery`: snapshot + replay through ``StreamProcessor.process``;
* :mod:`tickpath.engine.journal.extension`: :class:`JournalExtension` for the engine loop;
* :mod:`tickpath.engine.journal.cli`: ``tickpath replay`` and the serve flags.

See docs/reliability.md.
"""
