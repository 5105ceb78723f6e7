#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: create (or reuse) the slice, install the project on every
# worker, and run the same command on all of them (jax.distributed discovers the pod by itself).
#
# Required:
#   TPU_NAME     name of the TPU VM slice
#   ZONE         e.g. us-central2-b
#   CONFIG       e.g. configs/mixed.py:Mix_2K_10,im=synface,dm=synface
#   WORKDIR      a gs:// bucket path reachable by every worker (orbax writes from all hosts)
# Optional:
#   PROJECT      gcloud project (default: gcloud's configured one)
#   ACCEL_TYPE   accelerator type when the slice must be created, e.g. v4-32 (default: v4-32)
#   TPU_VERSION  runtime version for creation (default: tpu-ubuntu2204-base)
#   Extra arguments are passed to synface_jax.main on every worker.
set -euo pipefail
for var in TPU_NAME ZONE CONFIG WORKDIR; do
  if [ -z "${!var:-}" ]; then echo "tpu_pod.sh: set $var (see the top of this script)" >&2; exit 2; fi
done
command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud is not installed" >&2; exit 2; }
ACCEL_TYPE="${ACCEL_TYPE:-v4-32}"
TPU_VERSION="${TPU_VERSION:-tpu-ubuntu2204-base}"
project=(); [ -n "${PROJECT:-}" ] && project=(--project="$PROJECT")
tpu=(gcloud compute tpus tpu-vm "${project[@]}")

if ! "${tpu[@]}" describe "$TPU_NAME" --zone="$ZONE" >/dev/null 2>&1; then
  "${tpu[@]}" create "$TPU_NAME" --zone="$ZONE" --accelerator-type="$ACCEL_TYPE" \
    --version="$TPU_VERSION"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
# The jax release the project is tested with (constraints.txt), with its TPU runtime.
jax_version="$(sed -n 's/^jax==//p' "$repo/constraints.txt")"
[ -n "$jax_version" ] || { echo "tpu_pod.sh: no jax== line in $repo/constraints.txt" >&2; exit 2; }
archive="$(mktemp -d)/synface_jax.tar.gz"
git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
"${tpu[@]}" scp "$archive" "$TPU_NAME":~/synface_jax.tar.gz --zone="$ZONE" --worker=all
"${tpu[@]}" ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e; mkdir -p ~/synface_jax && tar -xzf ~/synface_jax.tar.gz -C ~/synface_jax && cd ~/synface_jax
  pip install -q 'jax[tpu]==$jax_version' -e '.[gcs]'"

# Every value reaches the workers' shell quoted (%q): spaces, quotes and * stay as they are.
args=$(printf ' %q' --config="$CONFIG" --workdir="$WORKDIR" "$@")
"${tpu[@]}" ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd ~/synface_jax && python -m synface_jax.main --distributed$args"
