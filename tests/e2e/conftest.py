"""Fixtures for end-to-end tests on network namespaces (root only).

Every lab built here uses a run id starting with ``S2C_E2E_PREFIX`` (default ``s2ct-``) plus a
random part, and is torn down in a ``finally``; a session-end sweep removes anything left under
this session's own prefix (never other sessions' namespaces).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from s2c.lab.sample import small_topology
from s2c.model.topology import Topology

E2E_PREFIX = os.environ.get("S2C_E2E_PREFIX", "s2ct-")
# one prefix per pytest session, so the final sweep only touches what this session made
SESSION_PREFIX = f"{E2E_PREFIX}{secrets.token_hex(2)}"

def _new_run_id(tag: str = "") -> str:
    return f"{SESSION_PREFIX}{tag}-{secrets.token_hex(2)}"


@pytest.fixture
def new_run_id():
    """``new_run_id(tag="")`` -> a fresh run id under this session's prefix."""
    return _new_run_id


@pytest.fixture(scope="session")
def e2e_prefix() -> str:
    """The run-id prefix of every lab this pytest session builds."""
    return SESSION_PREFIX


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def lab_factory(run_dir: Path):
    """Build labs that are always torn down: ``lab = lab_factory(topology, capture=True)``."""
    from s2c.lab.netns import NetnsBackend

    made = []

    def make(topology: Topology | None = None, *, capture: bool = True, tag: str = "", build=True):
        lab = NetnsBackend(_new_run_id(tag), run_dir, topology or small_topology(), capture=capture)
        made.append(lab)
        if build:
            lab.build()
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.teardown()


@pytest.fixture(scope="session", autouse=True)
def _sweep_session_prefix():
    yield
    if os.geteuid() == 0:
        from s2c.lab.cleanup import cleanup

        cleanup(SESSION_PREFIX)
