#!/usr/bin/env bash
# The test suite: lint, types, then pytest (real sshd per simulated member).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
ruff check .
ruff format --check .
mypy
python3 -m pytest -q "$@"
