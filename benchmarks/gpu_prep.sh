#!/usr/bin/env bash
# Builds, on this machine, what benchmarks/gpu_realdata.sh needs on the GPU machine, which cannot
# reach a package registry and does not get ../shared:
#
#   gpu_wheels/site/   the pure-Python packages the study imports and that machine lacks
#                      (captum for Grad-CAM / Integrated Gradients, pytorch-msssim for SSIM),
#                      unpacked (a pure-Python wheel is a zip of the installed files)
#   gpu_data/cxr128/   a copy of the cxr128 input shards (about 33 MB)
#
# Both folders are git-ignored; name them in the device call's carry: ["gpu_wheels", "gpu_data"].
# The GPU machine already has torch, torchvision, numpy, pyarrow, pillow, tqdm and matplotlib.
#
#   bash benchmarks/gpu_prep.sh            # CXR128=... to copy another shard folder
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
CXR128=${CXR128:-../shared/data/cxr128}
PACKAGES=(captum pytorch-msssim)  # versions: the ones installed here (tested together)

# --- wheels ----------------------------------------------------------------------------------------
rm -rf gpu_wheels
mkdir -p gpu_wheels/dist gpu_wheels/site
for name in "${PACKAGES[@]}"; do
  version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d gpu_wheels/dist "$name==$version"
done
for wheel in gpu_wheels/dist/*.whl; do
  case "$wheel" in
    *-py3-none-any.whl) "$PYTHON" -m zipfile -e "$wheel" gpu_wheels/site ;;
    *) echo "error: $wheel is not a pure-Python wheel; it cannot be unpacked for another Python" >&2; exit 1 ;;
  esac
done
ls gpu_wheels/dist > gpu_wheels/WHEELS.txt
rm -rf gpu_wheels/dist  # only the unpacked files travel

# --- data ------------------------------------------------------------------------------------------
if ! ls "$CXR128"/*.parquet >/dev/null 2>&1; then
  echo "error: no .parquet shards under $CXR128 (set CXR128=...)" >&2
  exit 1
fi
rm -rf gpu_data/cxr128
mkdir -p gpu_data/cxr128
cp "$CXR128"/*.parquet gpu_data/cxr128/
if [ -f "$CXR128/README.md" ]; then cp "$CXR128/README.md" gpu_data/cxr128/; fi

echo "wheels: $(tr '\n' ' ' < gpu_wheels/WHEELS.txt)"
du -sh gpu_wheels gpu_data
echo 'carry: ["gpu_wheels", "gpu_data"]; then on the device: bash benchmarks/gpu_realdata.sh'
