#!/usr/bin/env bash
# Quick start, step 1: set everything up and run a real search.
#   Installs gpusched into .venv, starts a daemon (on the host's GPUs, or on 2 fake GPUs when
#   the host has none), submits examples/digits/experiment.yaml (a numpy MLP that really
#   learns), follows it with `gpusched ls`, and ends with `gpusched best`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"   # trials run `python`: the venv's, with gpusched in it
demo="$PWD/.gpusched-demo"
rm -rf "$demo" && mkdir -p "$demo"
export GPUSCHED_SOCKET="$demo/gpusched.sock"

gpus=$(python - <<'PY'
try:
    import pynvml
    pynvml.nvmlInit()
    print(pynvml.nvmlDeviceGetCount())
except Exception:
    print(0)
PY
)
fake=()
if [[ "$gpus" == "0" ]]; then
    echo "No NVIDIA GPU found on this host: the demo runs on 2 fake GPUs (--fake-gpus 2)."
    fake=(--fake-gpus 2)
else
    echo "Found $gpus NVIDIA GPU(s) through NVML: the demo schedules trials on them."
fi
start_daemon() {  # a daemon on a fresh state folder, with "$@" (e.g. --fake-gpus 2)
    rm -rf "$demo/state"
    gpusched daemon --state-dir "$demo/state" "$@" >"$demo/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do gpusched gpus >/dev/null 2>&1 && break; sleep 0.1; done
    gpusched gpus
}
stop_daemon() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }
# Why nothing of experiment $1 runs yet ("" once a trial has started).
not_started() {
    gpusched show "$1" --json | python -c '
import json, sys
view = json.load(sys.stdin)
if not any(view["trials"].get(s) for s in ("running", "completed", "failed", "stopped")):
    print((view.get("waiting") or {}).get("message") or view["state"])'
}
daemon=
trap 'stop_daemon' EXIT
start_daemon "${fake[@]}"

exp=$(gpusched submit examples/digits/experiment.yaml)
echo "submitted experiment $exp; following it with \`gpusched ls $exp\` ..."
waited=0
while :; do
    gpusched ls | sed -n "1p;/^$exp /p"
    ended=0; gpusched wait "$exp" --timeout 3 >/dev/null 2>&1 || ended=$?
    [[ $ended -eq 124 ]] || break   # 124: still running after 3 s
    waited=$((waited + 3))
    if (( waited >= 30 )) && why=$(not_started "$exp") && [[ -n "$why" ]]; then
        # The host's GPUs are taken (another program uses them): no trial started in 30 s.
        if (( ${#fake[@]} )); then
            echo "No trial could start in 30 s: $why. See $demo/daemon.log." >&2
            exit 1
        fi
        echo "No trial could start on this host's GPUs in 30 s: $why."
        echo "The demo runs on 2 fake GPUs instead (--fake-gpus 2)."
        gpusched cancel "$exp" >/dev/null
        stop_daemon
        fake=(--fake-gpus 2)
        start_daemon "${fake[@]}"
        exp=$(gpusched submit examples/digits/experiment.yaml)
        echo "submitted experiment $exp; following it ..."
        waited=0
    fi
done
echo
gpusched ls "$exp"
echo
echo "best trials of $exp:"
gpusched best "$exp" -n 3
echo
echo "The demo daemon has stopped; its log is $demo/daemon.log and its trial log stays in"
echo "$demo/state. To look around: export PATH=\"$PWD/.venv/bin:\$PATH\"; then"
echo "  gpusched daemon --state-dir $demo/state ${fake[*]} &   and   gpusched show $exp"
