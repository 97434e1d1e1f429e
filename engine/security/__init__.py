"""Security: CURVE encryption and client authentication on the engine's ZeroMQ endpoints.

* :mod:`tickpath.engine.security.config`: the ``[security]`` config section;
* :mod:`tickpath.engine.security.curve`: :func:`apply_curve_server` / :func:`apply_curve_client`;
* :mod:`tickpath.engine.security.guard`: :class:`ConnectionGuard` (ZAP handler with the
  allow-list and connection caps, socket monitors, refusal counts);
* :mod:`tickpath.engine.security.keys`: key pairs (``tickpath keys new|list``);
* :mod:`tickpath.engine.security.extension`: :class:`SecurityExtension` for the engine loop.

Off by default (loopback); see docs/reliability.md for production.
"""
