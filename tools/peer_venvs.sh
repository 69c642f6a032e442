#!/usr/bin/env bash
# The throughput peers of benchmarks/throughput_peers.py, each in a venv of its own (their pins clash
# with a3c's: Sample Factory pins gymnasium<1.0 / numpy<2 era packages). Never committed.
#   tools/peer_venvs.sh sf       -> /work/venvs/sf      (sample-factory + ale-py)
#   tools/peer_venvs.sh envpool  -> /work/venvs/envpool (envpool + torch CPU, CleanRL-style PPO)
# torch: the CPU wheel a3c's constraints.txt pins (found via pip's find-links). VENVS=DIR puts them elsewhere. Logs of the installs go to $VENVS/<name>.log.
set -euo pipefail
VENVS=${VENVS:-/work/venvs}
PY=${PYTHON:-python3}
mkdir -p "$VENVS"
case "${1:-}" in
  sf)
    $PY -m venv "$VENVS/sf"
    "$VENVS/sf/bin/python" -m pip install -U pip >"$VENVS/sf.log" 2>&1
    "$VENVS/sf/bin/python" -m pip install "torch==2.13.0+cpu" sample-factory ale-py opencv-python-headless >>"$VENVS/sf.log" 2>&1
    ;;
  envpool)
    $PY -m venv "$VENVS/envpool"
    "$VENVS/envpool/bin/python" -m pip install -U pip >"$VENVS/envpool.log" 2>&1
    "$VENVS/envpool/bin/python" -m pip install "torch==2.13.0+cpu" envpool >>"$VENVS/envpool.log" 2>&1
    ;;
  *) echo "usage: $0 sf|envpool" >&2; exit 2 ;;
esac
