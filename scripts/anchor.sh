#!/usr/bin/env bash
# Times the official PatchCore pipeline's steps on this machine (scripts/anchor.py), the anchor
# that `patchcore bench` is compared with. Installs faiss-cpu and scipy once, beside the setup venv.
#   bash scripts/anchor.sh ../shared/data/mvtec_ad/bottle [--predict-images N] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
TORCH_VERSION=2.13.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/patchcore"
PY="$CACHE/torch-$TORCH_VERSION/bin/python"
PKGS="$CACHE/anchor-packages"
if [ ! -f "$PKGS/.complete" ]; then
  echo "anchor: installing faiss-cpu and scipy into $PKGS"
  "$PY" -m pip install --disable-pip-version-check -q --target "$PKGS" \
    faiss-cpu==1.15.1 scipy==1.17.1 numpy==2.4.6
  touch "$PKGS/.complete"
fi
PYTHONPATH="$PKGS" exec "$PY" scripts/anchor.py "$@"
