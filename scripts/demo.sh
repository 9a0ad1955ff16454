#!/usr/bin/env bash
# The demo: start a local simulated IRIS mirror (real sshd per member), show the drift,
# sync it, and prove by a second drift run that every member now matches the primary.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
LAB=${LAB:-$PWD/lab}

mirrorsync lab down --dir "$LAB" >/dev/null 2>&1 || true
rm -rf "$LAB"
mirrorsync lab up --dir "$LAB" || exit 1
trap 'mirrorsync lab down --dir "$LAB" >/dev/null' EXIT

if [ -t 1 ]; then bold=$'\033[1m'; plain=$'\033[0m'; else bold=; plain=; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; echo "(exit code $?)"; }
step mirrorsync --log-level warning drift -c "$LAB/config.yaml"
step mirrorsync --log-level warning sync -c "$LAB/config.yaml"
step mirrorsync --log-level warning drift -c "$LAB/config.yaml"
