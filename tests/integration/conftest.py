"""Shared fixtures of the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def hss_daemon(tmp_path):
    """A real ``python -m hss`` on loopback (hss.testing.HssLauncher), stopped after the test."""
    from hss.testing import HssLauncher

    launcher = HssLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()
