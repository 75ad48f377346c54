#!/usr/bin/env bash
# Creates .venv and installs gpusched (editable) with its test tools; a no-op when up to date.
# Sourced by setup.sh and test.sh, so a fresh clone needs nothing installed beforehand but
# python3 (>= 3.11).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.gpusched-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "gpusched needs Python >= 3.11 (found $(python3 --version 2>&1))" >&2; exit 1; }
echo "setting up $venv ..." >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
echo "$want" > "$stamp"
