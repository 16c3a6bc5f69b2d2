#!/usr/bin/env bash
# One row of the README's accuracy table: fit on a dataset's good images, evaluate its test set.
#   bash scripts/accuracy.sh NAME DATA [fit flags...]
# e.g. bash scripts/accuracy.sh lite2-6-14 ../shared/data/mvtec_ad/bottle --backbone efficientnet_lite2
# PATCHCORE_BIN=path uses another binary (e.g. a copy, so rebuilding meanwhile cannot swap it).
# EVAL_FLAGS="..." are passed to eval too (runtime flags such as --precision bf16 or --weights FILE).
# Writes results/NAME.json (eval report) and prints a markdown row:
#   | NAME | image AUROC | pixel AUROC | PRO | ms per image | fit s |
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; data=$2; shift 2
mkdir -p results
bin=${PATCHCORE_BIN:-target/debug/patchcore}
[ -x "$bin" ] || cargo build --locked --bin patchcore
SECONDS=0
"$bin" fit --data "$data" --out "results/$name.safetensors" --calibration-images 32 "$@" >"results/$name.fit.log" 2>&1
fit_s=$SECONDS
# shellcheck disable=SC2086 # EVAL_FLAGS is a list of flags
"$bin" eval --bank "results/$name.safetensors" --data "$data" ${EVAL_FLAGS:-} --json "results/$name.json" >"results/$name.eval.log" 2>&1
python3 - "$name" "$fit_s" <<'PY'
import json, sys
name, fit_s = sys.argv[1], float(sys.argv[2])
r = json.load(open(f"results/{name}.json"))
pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"
print(f"| {name} | {pct(r['image_auroc'])} | {pct(r['pixel_auroc'])} | {pct(r['pro'])} | {r['timings_s']['ms_per_image']:.0f} | {fit_s:.0f} |")
PY
