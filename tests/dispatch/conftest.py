"""Fixtures of the dispatcher tests (helpers live in tests/dispatch/helpers.py)."""

from __future__ import annotations

import pytest

from tests.dispatch.helpers import Rig


@pytest.fixture
def rig():
    """A started dispatcher whose chain and corr routes go to an injectable FaultyBackend."""
    r = Rig()
    yield r
    r.close()
