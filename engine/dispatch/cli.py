"""Command-line glue of the milli path: ``serve --requests`` and ``tickpath request``."""

from __future__ import annotations

import argparse

from tickpath.engine.config import EngineConfig


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--requests ENDPOINT`` of ``tickpath serve``."""
    parser.add_argument(
        "--requests",
        metavar="ENDPOINT",
        help="bind a ROUTER for batch requests (price_chain, iv_surface, var; "
        "docs/dispatch.md) at ENDPOINT",
    )


def serve_overrides(args: argparse.Namespace) -> dict:
    """Config overrides from the milli-path flags."""
    return {"dispatch.requests.endpoint": getattr(args, "requests", None)}


def serve_extensions(config: EngineConfig) -> list:
    """``[MilliPath]`` plus ``RequestProcess`` (the request endpoint in its own process)
    when an endpoint is configured; [] if off."""
    if not config.dispatch.enabled:
        return []
    from tickpath.engine.dispatch.milli import MilliPath

    milli = MilliPath(config)
    extensions: list = [milli]
    if config.dispatch.requests.endpoint is not None:
        from tickpath.engine.service.request_process import RequestProcess

        extensions.append(RequestProcess(milli))
    return extensions


def add_request_parser(sub: argparse._SubParsersAction) -> None:
    """``tickpath request --endpoint ENDPOINT --file JOB.json``."""
    from tickpath.engine.service.requests import add_request_arguments, request_main

    p = sub.add_parser(
        "request",
        help="send one batch job to an engine's request endpoint and print the reply",
        description="Send a price_chain, iv_surface or var request (JSON file; docs/dispatch.md) "
        "to `serve --requests ENDPOINT` and print the reply as one JSON line.",
    )
    add_request_arguments(p)
    p.set_defaults(func=request_main)
