#!/usr/bin/env bash
# Install the Debian packages the testbed uses, only those missing. Safe to run again.
set -euo pipefail
PKGS=(iproute2 nftables tcpdump tshark iperf3 procps psmisc iputils-ping
      strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins)
python3 -c 'import ensurepip, venv' 2>/dev/null || PKGS+=(python3-venv)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# charon must not be started by the package's service: the tests start their own per namespace.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q strongswan-starter 2>/dev/null; then
  systemctl stop strongswan-starter || true
fi
exit 0
