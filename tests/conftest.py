"""Suite-wide hooks."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that kills the session's shared gateway must run after all others.
    items.sort(key=lambda item: item.get_closest_marker("kills_gateway") is not None)
