"""Market-data sources for the streaming core (``tickpath feed``).

* :mod:`engine.feed.synthetic` - a seeded multi-symbol market (TRADE, QUOTE, L3 ORDER), numba
* :mod:`engine.feed.recording` - recording files (wire frames concatenated), writer and reader
* :mod:`engine.feed.publisher` - :func:`~engine.feed.publisher.run_feed`, the paced PUB feed
* :mod:`tickpath.engine.feed.bitstamp` - importer of the ob-analytics Bitstamp BTC/USD L3 sample
* :mod:`engine.feed.cli` - argparse glue for ``tickpath feed`` and ``tickpath import-bitstamp``
"""
