"""The milli path: backends, routing, bounded job lanes, health and fallback, and the
engine extension that feeds them (chains, correlation) and publishes their results.

See docs/dispatch.md. Entry points: `tickpath.engine.dispatch.milli.MilliPath` (the extension),
`engine.dispatch.dispatcher.Dispatcher`, `engine.dispatch.backends.default_registry`,
``python -m tickpath.engine.dispatch.calibration`` (measure the GPU crossovers).
"""
