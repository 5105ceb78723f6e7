#!/usr/bin/env bash
# Train on this machine (all its GPUs/TPU chips, or the CPU).
#
#   CONFIG   config file and argument      (default: configs/demo.py)
#   WORKDIR  checkpoints and metrics       (default: runs/local)
#   Extra arguments are passed on, e.g. --config.optim.batch_size=256.
#
#   CONFIG=configs/mixed.py:Mix_2K_10,im=synface,dm=synface WORKDIR=runs/mix \
#     launch/local.sh --config.real.path=/data/casia-webface
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${CONFIG:-configs/demo.py}"
WORKDIR="${WORKDIR:-runs/local}"
exec python -m synface_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
