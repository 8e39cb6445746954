#!/usr/bin/env bash
# Prepare a fresh machine for the lab and the tests: system tools + a virtualenv in .venv.
# Debian/Ubuntu: installs iproute2, nftables, dnsmasq-base, python3-venv, and for the systemd tests
# systemd-container and debootstrap, and for the RPM tests rpm, rpmlint and python3-packaging, with apt.
# Amazon Linux 2023 / Fedora: installs iproute, nftables, dnsmasq with dnf.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (the lab creates network namespaces): sudo $0" >&2; exit 3
fi
PY=${PYTHON:-python3}
missing=()
command -v ip >/dev/null 2>&1 || missing+=(ip)
command -v nft >/dev/null 2>&1 || missing+=(nft)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd-analyze)
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-nspawn)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v rpmbuild >/dev/null 2>&1 || missing+=(rpmbuild)
command -v rpmlint >/dev/null 2>&1 || missing+=(rpmlint)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages for: ${missing[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iproute2 nftables dnsmasq-base python3-venv systemd systemd-container debootstrap \
      rpm rpmlint python3-packaging >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q iproute nftables dnsmasq python3 systemd-container debootstrap \
      rpm-build rpmlint python3-rpm-macros systemd-rpm-macros >/dev/null
  else
    echo "setup: install iproute2, nftables and dnsmasq with your package manager" >&2; exit 3
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's own chatter goes to a log; it is shown only when the install fails.
log=.venv/setup.log
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test,prometheus]'; } >"$log" 2>&1; then
  grep -v '^WARNING: Location' "$log" | tail -20 >&2
  echo "setup: pip install failed (full log: $log)" >&2; exit 3
fi
.venv/bin/python -c 'import vpce_doctor, moto, dns, trustme' \
  || { echo "setup: the virtualenv .venv is incomplete" >&2; exit 3; }
echo "setup: ready ($(.venv/bin/python --version), vpce-doctor $(.venv/bin/vpce-doctor --version | cut -d" " -f2))"
