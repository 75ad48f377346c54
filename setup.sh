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
gpusched daemon --state-dir "$demo/state" "${fake[@]}" >"$demo/daemon.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do gpusched gpus >/dev/null 2>&1 && break; sleep 0.1; done
gpusched gpus

exp=$(gpusched submit examples/digits/experiment.yaml)
echo "submitted experiment $exp; following it with \`gpusched ls $exp\` ..."
while :; do
    gpusched ls | sed -n "1p;/^$exp /p"
    ended=0; gpusched wait "$exp" --timeout 3 >/dev/null 2>&1 || ended=$?
    [[ $ended -eq 124 ]] || break   # 124: still running after 3 s
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
