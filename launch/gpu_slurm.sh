#!/usr/bin/env bash
# Train on a SLURM GPU cluster, one process per GPU: submit with
#
#   CONFIG=configs/mixed.py:Mix_2K_10,im=synface,dm=synface WORKDIR=/shared/runs/mix \
#     sbatch --nodes=4 --gpus-per-node=8 --ntasks-per-node=8 launch/gpu_slurm.sh \
#       --config.real.path=/shared/casia-webface
#
# Required (exported into the job):
#   CONFIG    config file and argument
#   WORKDIR   a path every node can write (orbax writes checkpoints from all processes)
# Optional:
#   PYTHON    interpreter with synface_jax installed (default: python)
# jax.distributed.initialize() reads SLURM's variables (job id, node list, task id) by itself.
#SBATCH --job-name=synface_jax
#SBATCH --cpus-per-task=8
#SBATCH --output=%x-%j.out
set -euo pipefail
for var in CONFIG WORKDIR; do
  if [ -z "${!var:-}" ]; then echo "gpu_slurm.sh: set $var (see the top of this script)" >&2; exit 2; fi
done
if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "gpu_slurm.sh: not inside a SLURM job; submit it with sbatch (see the top of this script)" >&2
  exit 2
fi
exec srun --kill-on-bad-exit=1 "${PYTHON:-python}" -m synface_jax.main --distributed \
  --config="$CONFIG" --workdir="$WORKDIR" "$@"
