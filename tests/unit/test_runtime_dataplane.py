"""Choosing a daemon's ESP data plane from its ``dataplane`` param (s2c.runtime.dataplane)."""

from __future__ import annotations

import pytest

from s2c.dataplane.plane import DataPlane
from s2c.dataplane.xfrm import KernelEspBackend
from s2c.runtime.dataplane import DataPlaneConfigError, DataPlaneParams, choose_backend, make_dataplane


def test_default_is_userspace_without_probing():
    def probe():
        raise AssertionError("the default must not probe the kernel")

    assert choose_backend(None, probe)[0] == "userspace"
    assert choose_backend("userspace", probe)[0] == "userspace"
    assert choose_backend("xfrm", probe)[0] == "xfrm"


def test_auto_follows_the_kernel_probe():
    assert choose_backend("auto", lambda: (True, "esp4 loaded")) == ("xfrm", "auto: kernel ESP available (esp4 loaded)")
    backend, why = choose_backend("AUTO", lambda: (False, "AES-GCM ESP state refused"))
    assert backend == "userspace" and "AES-GCM ESP state refused" in why


def test_bad_name_is_a_clear_error():
    with pytest.raises(DataPlaneConfigError, match=r"params.dataplane: 'kernel' is not one of userspace, xfrm, auto"):
        choose_backend("kernel")


def test_make_dataplane_builds_the_chosen_class_unstarted():
    dp, name, _ = make_dataplane(DataPlaneParams(None, 1, 5, True), tun_name="esp9")
    assert isinstance(dp, DataPlane) and name == "userspace" and not dp.started
    assert (dp.workers, dp.busy_poll_us, dp.udp_gso) == (1, 5, True)
    kb, name, _ = make_dataplane(DataPlaneParams("xfrm"), tun_name="esp9")
    assert isinstance(kb, KernelEspBackend) and name == "xfrm"


def test_params_from_a_daemon_config():
    d = DataPlaneParams.from_params({"workers": 2, "busy_poll_us": 0, "udp_gso": True, "dataplane": "auto"})
    assert d == DataPlaneParams("auto", 2, 0, True)
    d = DataPlaneParams.from_params({})
    assert d.dataplane is None and d.workers in (1, 2) and d.busy_poll_us == 20000 and d.udp_gso is False
    with pytest.raises(DataPlaneConfigError, match="params.dataplane"):
        DataPlaneParams.from_params({"dataplane": "dpdk"})
