#!/usr/bin/env bash
# The GPU throughput checks of issues 2 and 3 in one call (no Ray, no data, random-weight paper
# networks): the GAN training step and the inversion, authors' recipe against raygan, same device.
#
# On the GPU machine, from the repo root (nothing to carry; about 5-8 minutes on an H100: the training
# benchmark times six rows, one change each, two of them compiled):
#     bash benchmarks/gpu_check.sh
# Here, a CPU check of the script itself (tiny networks, about 2 minutes):
#     RAYGAN_GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh
#
# Each benchmark runs under its own timeout so one slow step cannot eat the whole device call;
# the last line of each is `RESULT {json}`, saved to $OUT/<name>.json, and the full output to
# $OUT/<name>.log. The real-data results (issue 6) are a separate call: benchmarks/gpu_realdata.sh.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-runs/gpu-check}
PY=${PYTHON:-python3}
export PYTHONPATH=".:gpu_wheels/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"

if [ -n "${RAYGAN_GPU_CHECK_QUICK:-}" ]; then
  train_args=(--quick)
  inversion_args=(--quick)
else
  # 256 images in one batch for raygan's speed; the authors' 5000-step quality on 32 of them
  # (batched: inversion is batch-independent), their speed at batch 1 over 200 steps, scaled.
  train_args=(--device cuda)
  inversion_args=(--device cuda --images 256 --quality-images 32)
fi

run() {  # run NAME TIMEOUT_S SCRIPT ARGS...: log to $OUT/NAME.log, RESULT json to $OUT/NAME.json
  local name=$1 limit=$2
  shift 2
  echo "=== $name (timeout ${limit} s) ==="
  timeout "$limit" "$PY" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  local status=${PIPESTATUS[0]}
  grep '^RESULT ' "$OUT_DIR/$name.log" | tail -n 1 | cut -c8- > "$OUT_DIR/$name.json"
  [ -s "$OUT_DIR/$name.json" ] || rm -f "$OUT_DIR/$name.json"
  echo "=== $name: exit status $status ==="
  return "$status"
}

failed=0
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
run train_throughput 270 benchmarks/train_throughput.py "${train_args[@]}" || failed=1
run inversion_throughput 240 benchmarks/inversion_throughput.py "${inversion_args[@]}" || failed=1
ls -la "$OUT_DIR"
exit "$failed"
