"""Kernel ESP (XFRM) detection and the optional kernel backend.

The userspace data plane is the default. A kernel backend could only be used where the kernel has ESP
(CONFIG_INET_ESP / CONFIG_INET6_ESP); this machine's kernel has XFRM but no ESP, so
:func:`kernel_esp_available` reports ``(False, reason)`` here. :class:`KernelEspBackend` is a stub that
raises a clear error: it is not implemented yet.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

_PROBE_KEY = "0x" + "11" * 20


def _kernel_config() -> dict[str, str]:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            text = fh.read()
    except OSError:
        return {}
    cfg: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            cfg[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            cfg[line[2:-11]] = "n"
    return cfg


def _probe_xfrm_state(args: list[str]) -> tuple[bool, str]:
    """Add an ESP state in a throwaway, anonymous network namespace (unshare -n): nothing to clean up."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        return False, "unshare/ip not found"
    cmd = [unshare, "--net", ip, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
           "spi", "0x1000", "mode", "tunnel", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"probe failed to run: {e}"
    if r.returncode == 0:
        return True, "ip xfrm state add proto esp succeeded"
    return False, (r.stderr or r.stdout).strip() or f"exit {r.returncode}"


def kernel_esp_available(probe: bool = True) -> tuple[bool, str]:
    """Can this kernel do ESP itself? Returns (answer, human-readable reason)."""
    if not os.path.exists("/proc/net/xfrm_stat") and not os.path.exists("/proc/sys/net/core/xfrm_aevent_etime"):
        return False, "kernel has no XFRM (no /proc/net/xfrm_stat)"
    reasons: list[str] = []
    cfg = _kernel_config()
    if cfg:
        esp4, esp6 = cfg.get("CONFIG_INET_ESP", "n"), cfg.get("CONFIG_INET6_ESP", "n")
        if esp4 == "n" and esp6 == "n":
            reasons.append("CONFIG_INET_ESP and CONFIG_INET6_ESP are not set in /proc/config.gz")
    if os.path.isdir("/sys/module/esp4") or os.path.isdir("/sys/module/esp6"):
        return True, "esp4/esp6 module loaded"
    if probe and os.geteuid() == 0:
        ok, msg = _probe_xfrm_state(["aead", "rfc4106(gcm(aes))", _PROBE_KEY, "128"])
        if ok:
            return True, msg
        reasons.append(f"AES-GCM ESP state refused: {msg}")
        ok, msg = _probe_xfrm_state(["enc", "cbc(aes)", "0x" + "22" * 16, "auth-trunc", "hmac(sha256)",
                                     "0x" + "33" * 32, "128"])
        if ok:
            return True, msg
        reasons.append(f"AES-CBC/HMAC ESP state refused: {msg}")
    elif probe:
        reasons.append("not root: XFRM state probe skipped")
    if not reasons:
        return False, "no evidence of kernel ESP support (no esp4/esp6 module)"
    return False, "; ".join(reasons)


class KernelEspBackend:
    """Placeholder for an XFRM-offloaded data plane. Not implemented: raises on construction."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        ok, why = kernel_esp_available()
        if not ok:
            raise RuntimeError(f"kernel ESP is not available on this machine: {why}")
        raise NotImplementedError("the kernel (XFRM) ESP backend is not implemented; use s2c.dataplane.DataPlane")
