#!/usr/bin/env bash
# Install what mirrorsync's demo and tests need on a fresh Debian/Ubuntu machine:
# OpenSSH's sshd (one per simulated member) and the package with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd provides systemd-analyze, which the tests run on the shipped units (verify).
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1 \
  || ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: sshd or systemd-analyze is missing; run as root or install openssh-server systemd" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openssh-server openssh-client systemd >/dev/null
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
