"""Reliability: a write-ahead journal of received frames, snapshots, recovery and replay.

Modelled on kdb+'s tickerplant: every frame is logged before it is processed,
and any state is rebuilt by replaying the log (from a snapshot).

* :mod:`engine.journal.format`: segment and entry layout, checksums;
* :mod:`engine.journal.writer`: appending under a sync policy;
* :mod:`engine.journal.reader`: torn-tail repair, verified iteration;
* :mod:`engine.journal.snapshot`: atomic snapshots of the whole state;
* :mod:`engine.journal.recovery`: snapshot + replay through ``StreamProcessor.process``;
* :mod:`engine.journal.extension`: :class:`JournalExtension` for the engine loop;
* :mod:`engine.journal.cli`: ``tickpath replay`` and the serve flags.

See docs/reliability.md.
"""
