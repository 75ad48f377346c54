#!/usr/bin/env bash
# Quick start, step 2: run the checks. ruff, mypy --strict, then the test suite (a real daemon,
# socket, SQLite and subprocess trials on fake GPUs; tests marked `gpu` skip without one).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
mypy
exec pytest -q "$@"
