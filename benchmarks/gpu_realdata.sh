#!/usr/bin/env bash
# raygan's real-data results on one GPU (issue 6), without Ray: `raygan study` at the paper preset
# (VGG16-bn classifier and the authors' 128 px GAN) on the cxr128 chest X-rays.
#
# On this machine first:   bash benchmarks/gpu_prep.sh   (builds gpu_wheels/ and gpu_data/)
# On the GPU machine, from the repo root, with carry ["gpu_wheels", "gpu_data"]:
#                          bash benchmarks/gpu_realdata.sh
#
# It writes to $OUT: results.json, results.md, log.txt and figures/ with 5 PNGs (Figure-2 pictures of
# 2 positive and 2 negative test images with raygan's inversion, and of the first positive with the
# authors' recipe): 8 files. Everything else (weights, evaluation.json) stays in a scratch folder.
#
# Sizes and time (the whole run must end well inside a 10-minute call; H100 anchors in DESIGN.md):
#   classifier  VGG16-bn, 25 epochs (preset), stops after the epoch that crosses 75 s
#   GAN         paper preset (bf16, channels_last, torch.compile, batch 256), 200 epochs (preset),
#               stops after the epoch that crosses 180 s (compilation included)
#   evaluation  the first 64 test images (raygan's shipped inversion: 1000 steps max, bf16);
#               class consistency 1000 z1 x 10 repeats = 40,000 generated images; sanity check on 8
#   authors     the same 64 images at 5000 steps fp32, batched; halved (and re-timed) until a timed
#               probe predicts it fits in 100 s, skipped below 8 images
#   encoder     the paper preset's encoder (issue 14), 30 epochs, stops after the epoch that crosses 40 s;
#               then the same 64 images inverted from E(x) + encoder_steps and from scratch, both timed
#   worst case about 15 + 80 + 190 + 60 + 105 + 55 + 5 s = 8.5 min; a 570 s timeout stops a runaway
#   run before the call's 600 s limit (the log is in $OUT either way).
#
# Knobs (a CPU check of this script's logic here: RAYGAN_STUDY_PRESET=tiny with tiny sizes in
# RAYGAN_STUDY_ARGS, see tests/test_study.py):
#   RAYGAN_STUDY_PRESET  model preset (paper)
#   RAYGAN_STUDY_DATA    input shards (gpu_data/cxr128)
#   RAYGAN_STUDY_ARGS    extra `raygan study` flags, appended (later flags win)
#   RAYGAN_STUDY_WORK    scratch folder for weights and the full outputs (a fresh temporary folder)
#   RAYGAN_STUDY_TIMEOUT seconds before the study is stopped (570)
#   OUT                  where the results go (runs/gpu-realdata when unset)
#   PYTHON               the interpreter (python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${RAYGAN_STUDY_PRESET:-paper}
DATA=${RAYGAN_STUDY_DATA:-gpu_data/cxr128}
WORK=${RAYGAN_STUDY_WORK:-$(mktemp -d)}
OUT_DIR=${OUT:-runs/gpu-realdata}
PY=${PYTHON:-python3}
export PYTHONPATH=".:gpu_wheels/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"

# --- 1. what the study imports must be importable (nothing can be installed there) ----------------
"$PY" - "$PRESET" <<'EOF'
import importlib
import sys

import torch

cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      + (f"GPU {torch.cuda.get_device_name(0)}" if cuda else "no CUDA device"))
if not cuda and sys.argv[1] == "paper":
    sys.exit("error: the paper preset needs a CUDA GPU; for a CPU check of this script use RAYGAN_STUDY_PRESET=tiny")
missing = []
for name in ("torch", "torchvision", "numpy", "pyarrow", "PIL", "tqdm", "matplotlib", "captum", "pytorch_msssim"):
    try:
        importlib.import_module(name)
    except ImportError as error:
        missing.append(f"{name} ({error})")
if missing:
    sys.exit("error: cannot import " + ", ".join(missing)
             + "\n  captum and pytorch_msssim come from gpu_wheels/site: run `bash benchmarks/gpu_prep.sh` on the"
             " development machine and name gpu_wheels in the device call's carry")
EOF
if ! ls "$DATA"/*.parquet >/dev/null 2>&1; then
  echo "error: no input shards at $DATA: run benchmarks/gpu_prep.sh and name gpu_data in carry" >&2
  exit 2
fi

# --- 2. the study --------------------------------------------------------------------------------
# shellcheck disable=SC2086  # RAYGAN_STUDY_ARGS is a list of flags
set +e
timeout "${RAYGAN_STUDY_TIMEOUT:-570}" "$PY" -m raygan.cli study --preset "$PRESET" --data "$DATA" --out "$WORK/study" \
  --classifier-cap 75 --gan-cap 180 --authors-cap 100 --images 64 --eval-batch 64 \
  --consistency-z1 1000 --consistency-repeats 10 --sanity-images 8 --figures 4 \
  --encoder-epochs 30 --encoder-cap 40 \
  ${RAYGAN_STUDY_ARGS:-} 2>&1 | tee "$OUT_DIR/log.txt"
status=${PIPESTATUS[0]}
set -e

# --- 3. bring back the results (at most 8 files) -------------------------------------------------
for name in results.json results.md; do
  if [ -f "$WORK/study/$name" ]; then cp "$WORK/study/$name" "$OUT_DIR/"; fi
done
if [ -d "$WORK/study/figures" ]; then
  mkdir -p "$OUT_DIR/figures"
  find "$WORK/study/figures" -name 'raygan-*.png' -o -name 'authors-*.png' | head -n 5 \
    | xargs -r cp -t "$OUT_DIR/figures/"
fi
echo "study exit status $status; results in $OUT_DIR:"
ls -la "$OUT_DIR" "$OUT_DIR/figures" 2>/dev/null || true
exit "$status"
