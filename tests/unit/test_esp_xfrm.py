"""Kernel ESP detection (s2c.dataplane.xfrm)."""

from __future__ import annotations

import gzip
import os

import pytest

from s2c.dataplane.xfrm import KernelEspBackend, _kernel_config, kernel_esp_available


def _config_says_no_esp() -> bool:
    cfg = _kernel_config()
    return bool(cfg) and cfg.get("CONFIG_INET_ESP", "n") == "n" and cfg.get("CONFIG_INET6_ESP", "n") == "n"


def test_detection_returns_reason():
    ok, why = kernel_esp_available()
    assert isinstance(ok, bool) and why


@pytest.mark.skipif(not _config_says_no_esp(), reason="only meaningful on a kernel built without ESP")
def test_this_kernel_has_no_esp():
    ok, why = kernel_esp_available()
    assert ok is False
    assert "CONFIG_INET_ESP" in why
    if os.geteuid() == 0:
        assert "ESP state refused" in why  # the live XFRM probe failed as well
    b = KernelEspBackend()  # constructing opens nothing; start() checks and refuses with the reason
    with pytest.raises(RuntimeError, match="kernel ESP not available here: .*CONFIG_INET_ESP"):
        b.start()
    assert not b.started and b.xs is None and b.tun is None


def test_config_parser(tmp_path, monkeypatch):
    p = tmp_path / "config.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("CONFIG_XFRM=y\n# CONFIG_INET_ESP is not set\nCONFIG_INET6_ESP=m\n")
    real_open = gzip.open
    monkeypatch.setattr(gzip, "open", lambda path, mode="rb": real_open(p if path == "/proc/config.gz" else path, mode))
    cfg = _kernel_config()
    assert cfg == {"CONFIG_XFRM": "y", "CONFIG_INET_ESP": "n", "CONFIG_INET6_ESP": "m"}
