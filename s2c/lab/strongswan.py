"""strongSwan (charon + swanctl, kernel-libipsec) as an independent IKEv2 peer inside a namespace.

Used by the interop tests and by ``make bench`` as the baseline. Each ``Charon`` gets its own
strongswan.conf, vici socket and a private /run (charon refuses to start next to another charon's
pid file), so several run side by side. This kernel has no ESP, so charon uses kernel-libipsec
(userspace ESP over a TUN device ``ipsec0``), which carries ESP only inside UDP 4500: connections
therefore set ``encap = yes``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CHARON = "/usr/lib/ipsec/charon"
PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints revocation kdf hmac gcm aes "
    "sha1 sha2 curve25519 attr kernel-libipsec kernel-netlink socket-default vici eap-identity"
)


class StrongSwanError(RuntimeError):
    pass


def available() -> tuple[bool, str]:
    if not os.path.exists(CHARON):
        return False, f"{CHARON} not found (apt-get install strongswan-charon)"
    if not shutil.which("swanctl"):
        return False, "swanctl not found (apt-get install strongswan-swanctl)"
    if not os.path.exists("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"):
        return False, "kernel-libipsec plugin missing (apt-get install libcharon-extra-plugins)"
    return True, "ok"


def _nsenter(netns: str) -> list[str]:
    path = netns if netns.startswith("/") else f"/run/netns/{netns}"
    return ["nsenter", f"--net={path}"]


@dataclass
class Charon:
    """One charon daemon in network namespace ``netns`` (a name under /run/netns or a path)."""

    netns: str
    workdir: Path
    extra_conf: str = ""  # appended inside charon { }
    log_level: int = 1

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.proc: subprocess.Popen | None = None

    @property
    def vici(self) -> str:
        return f"unix://{self.workdir / 'vici'}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "charon.log"

    def _write_conf(self) -> Path:
        for sub in ("run", "x509", "x509ca", "private", "pubkey", "rsa", "ecdsa", "pkcs8"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "strongswan.conf"
        conf.write_text(
            "charon {\n"
            f"  load = {PLUGINS}\n"
            "  port = 500\n  port_nat_t = 4500\n"
            "  retransmit_tries = 3\n  retransmit_timeout = 1.0\n  retransmit_base = 1.4\n"
            "  filelog {\n    stderr {\n"
            f"      default = {self.log_level}\n      ike = 1\n      time_format = %H:%M:%S\n"
            "      ike_name = yes\n    }\n  }\n"
            f"  plugins {{\n    vici {{\n      socket = {self.vici}\n    }}\n  }}\n"
            f"{self.extra_conf}\n"
            "}\n"
        )
        return conf

    def start(self, timeout: float = 10.0) -> None:
        ok, why = available()
        if not ok:
            raise StrongSwanError(why)
        conf = self._write_conf()
        run = self.workdir / "run"
        for f in run.iterdir():
            f.unlink()
        script = f"mount --make-rprivate / && mount --bind {run} /run && exec {CHARON}"
        env = dict(os.environ, STRONGSWAN_CONF=str(conf))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            _nsenter(self.netns) + ["unshare", "-m", "sh", "-c", script],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StrongSwanError(f"charon exited with {self.proc.returncode}: {self._tail()}")
            if (self.workdir / "vici").exists() and self._swanctl("--stats", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise StrongSwanError(f"charon did not open its vici socket within {timeout}s: {self._tail()}")

    def _tail(self, n: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _swanctl(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        res = subprocess.run(
            _nsenter(self.netns) + ["swanctl", *args, "--uri", self.vici],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and res.returncode != 0:
            raise StrongSwanError(f"swanctl {' '.join(args)}: {res.stdout.strip()} {res.stderr.strip()}")
        return res

    def load(self, swanctl_conf: str) -> None:
        """Load a swanctl.conf text (connections, secrets, pools); certs go in workdir/x509 etc."""
        path = self.workdir / "swanctl.conf"
        path.write_text(swanctl_conf)
        self._swanctl("--load-all", "--noprompt", "--file", str(path))

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: float = 15) -> float:
        """Initiate and wait for completion; return the wall time it took in seconds."""
        args = ["--initiate"]
        if child:
            args += ["--child", child]
        if ike:
            args += ["--ike", ike]
        args += ["--timeout", str(int(timeout))]
        t0 = time.perf_counter()
        self._swanctl(*args, timeout=timeout + 5)
        return time.perf_counter() - t0

    def initiate_async(self, ike: str) -> None:
        self._swanctl("--initiate", "--ike", ike, "--timeout", "-1", check=False)

    def terminate(self, ike: str) -> None:
        self._swanctl("--terminate", "--ike", ike, "--timeout", "5", check=False)

    def list_sas(self) -> str:
        return self._swanctl("--list-sas").stdout

    def established_count(self) -> int:
        return sum(1 for line in self.list_sas().splitlines() if "ESTABLISHED" in line)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "Charon":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def render(conf: dict, indent: int = 0) -> str:
    """Render a nested dict as strongSwan's settings syntax (swanctl.conf / strongswan.conf)."""
    pad = "  " * indent
    out = []
    for key, value in conf.items():
        if isinstance(value, dict):
            out.append(f"{pad}{key} {{\n{render(value, indent + 1)}{pad}}}\n")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}{key} = {', '.join(str(v) for v in value)}\n")
        elif isinstance(value, bool):
            out.append(f"{pad}{key} = {'yes' if value else 'no'}\n")
        else:
            out.append(f"{pad}{key} = {value}\n")
    return "".join(out)
