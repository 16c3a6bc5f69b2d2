#!/usr/bin/env bash
# The main job: install what is missing, build, make the synthetic demo category, fit a bank,
# evaluate it and open the operator app (without a display it prints the evaluation and stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --locked --bin patchcore -- demo "$@"
