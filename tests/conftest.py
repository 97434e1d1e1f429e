"""Shared fixtures: small engine configs and frame builders."""

from __future__ import annotations

import pytest

from tickpath.engine.config import load_config
from tickpath.engine.service.engine import StreamProcessor


@pytest.fixture(scope="session")
def processor_factory():
    """Build a warmed-up StreamProcessor for a given set of overrides."""

    def make(**overrides):
        config = load_config(None, {f"analytics.{k}": v for k, v in overrides.items()})
        proc = StreamProcessor(config)
        proc.warm_up()
        return proc

    return make
