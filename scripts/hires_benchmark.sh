#!/usr/bin/env bash
# The high-resolution benchmark (README: "High-resolution benchmark"): generates the long-bar
# category (`patchcore synth --kind long`), fits and evaluates it once per configuration, and
# prints image AUROC, pixel AUROC and PRO per defect size class and position.
#   bash scripts/hires_benchmark.sh CONFIG [CONFIG ...]
# Each CONFIG is one quoted string of fit flags, passed through verbatim ("" = the defaults), e.g.
#   bash scripts/hires_benchmark.sh "--crop" "--squash" "--resolution 512" "--resolution 1024"
# Environment:
#   OUT=/tmp/hires           where the data and the runs go (outside the repo)
#   FIT_FLAGS="..."           flags added to every fit (e.g. --backbone efficientnet_lite0 --no-select)
#   EVAL_FLAGS="..."          flags added to every eval (runtime flags: --device, --precision, --batch-size)
#   SYNTH_FLAGS="..."         flags for `patchcore synth` (--n-train, --n-test-good, --n-test-defect, --seed)
#   PATCHCORE_BIN=path        the binary (default target/debug/patchcore, built when missing)
#   PYTHON=path               python with numpy and scipy (default: the setup venv's)
# Writes OUT/runs/<config>/{flags.txt, bank.safetensors, fit.log, eval.log, eval.json, maps/}.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,15p' "$0"; exit 2; }
out=${OUT:-/tmp/hires}
bin=${PATCHCORE_BIN:-target/debug/patchcore}
py=${PYTHON:-$HOME/.cache/patchcore/torch-2.13.0/bin/python}
[ -x "$bin" ] || cargo build --locked --bin patchcore
[ -x "$py" ] || { echo "error: no python at $py (run bash scripts/setup.sh or set PYTHON)" >&2; exit 1; }
mkdir -p "$out/runs"
data="$out/data/bars"
# shellcheck disable=SC2086 # SYNTH_FLAGS is a list of flags
"$bin" synth --out "$out/data" --name bars ${SYNTH_FLAGS:-}
runs=()
for config in "$@"; do
    name=$(printf '%s' "$config" | tr -cs 'A-Za-z0-9.' '-' | sed 's/^-*//; s/-*$//')
    run="$out/runs/${name:-default}"
    rm -rf "$run/maps"
    mkdir -p "$run"
    printf '%s\n' "$config" >"$run/flags.txt"
    SECONDS=0
    # shellcheck disable=SC2086 # configurations and FIT_FLAGS are lists of flags
    "$bin" fit --data "$data" --out "$run/bank.safetensors" ${FIT_FLAGS:-} $config >"$run/fit.log" 2>&1 ||
        { echo "error: fit failed for '$config', see $run/fit.log" >&2; tail -3 "$run/fit.log" >&2; exit 1; }
    fit_s=$SECONDS
    SECONDS=0
    # shellcheck disable=SC2086 # EVAL_FLAGS is a list of flags
    "$bin" eval --bank "$run/bank.safetensors" --data "$data" ${EVAL_FLAGS:-} --json "$run/eval.json" \
        --dump-maps "$run/maps" >"$run/eval.log" 2>&1 ||
        { echo "error: eval failed for '$config', see $run/eval.log" >&2; tail -3 "$run/eval.log" >&2; exit 1; }
    echo "${config:-(defaults)}: fit ${fit_s} s, eval ${SECONDS} s; $(grep '^eval:' "$run/eval.log")"
    runs+=("$run")
done
echo
"$py" scripts/hires_analysis.py "$data" "${runs[@]}"
