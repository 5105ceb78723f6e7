#!/usr/bin/env bash
# Throughput figures on one accelerator, in one go, written to $OUT/bench.log (or ./bench.log).
# Needs only jax/flax/optax/orbax plus ml-collections and clu (no TensorFlow): where those two are
# missing, put their wheels in .whl/ and they are installed to /tmp/site first.
#
#   STEPS    timed steps per figure (default 10)
#   PEAK     per-device peak TFLOP/s for MFU (default 989: H100 SXM bf16 dense)
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-.}/bench.log"
STEPS="${STEPS:-10}"
PEAK="${PEAK:-989}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:.${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
bench() { echo "== benchmark $*" | tee -a "$log"; timeout 300 python3 -m synface_jax.benchmark "$@" --steps "$STEPS" 2>&1 | grep -E '^\{|Error' | tee -a "$log"; }
{ nvidia-smi -L 2>/dev/null; python3 -c "import jax; print(jax.devices())"; } 2>&1 | tee -a "$log"
for batch in 256 512; do
  for classes in 10000 100000; do
    bench step --arch r50 --dtype bfloat16 --batch "$batch" --classes "$classes" --peak-tflops "$PEAK"
  done
done
bench step --arch r50 --dtype bfloat16 --batch 512 --classes 10000 --regime synthetic --peak-tflops "$PEAK"
bench step --arch r50 --dtype bfloat16 --batch 512 --classes 10000 --regime mixed --peak-tflops "$PEAK"
bench generate --batch 512
bench generate --batch 512 --augment-renders
bench generate --batch 256 --generator discofacegan
bench mixup --batch 512
