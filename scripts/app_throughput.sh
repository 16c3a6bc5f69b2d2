#!/usr/bin/env bash
# The operator app's scoring throughput beside `patchcore predict`, on the demo bank, in one run:
#   1. builds the release binary (no-op when up to date) and makes the demo bank if missing;
#   2. makes N distinct copies of the demo's test images and scores them with `predict`;
#   3. starts `patchcore gui --inbox` under Xvfb, waits for the bank's own folder job to be
#      logged, moves the N images into the inbox and waits for the inbox job's log line;
#   4. prints app ms/image beside predict's, their ratio, and the app's CPU time per thread
#      (/proc/PID/task/*/{comm,stat}) over the inbox job;
#   5. (SCROLL_N > 0) starts the app again, drops SCROLL_N images into the inbox and scrolls
#      the gallery with xdotool while PATCHCORE_FRAME_LOG records every frame's interval and
#      CPU time; prints their median, 95th percentile and maximum.
# Needs Xvfb, xdpyinfo, xdotool and python3; ImageMagick's `import` for the screenshot (optional).
#
#   N=2000 SCROLL_N=10000 DISPLAY_NUM=:99 bash scripts/app_throughput.sh
# Environment: N, SCROLL_N, DISPLAY_NUM, DEMO (demo folder, default ./demo), PATCHCORE_MODELS
# (weights folder, default ./models), THREADS (passed as `gui --threads`), BATCH (default 8),
# WORK (scratch folder, default a new temporary one), SCROLL_SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
SCROLL_N=${SCROLL_N:-10000}
SCROLL_SECONDS=${SCROLL_SECONDS:-20}
DISPLAY_NUM=${DISPLAY_NUM:-:99}
DEMO=${DEMO:-demo}
MODELS=${PATCHCORE_MODELS:-models}
BATCH=${BATCH:-8}
WORK=${WORK:-$(mktemp -d -t patchcore-throughput.XXXXXX)}
BIN=target/release/patchcore
BANK="$DEMO/banks/demo_parts.safetensors"

cargo build --release --locked
if [ ! -f "$BANK" ]; then
    "$BIN" demo --no-gui --dir "$DEMO" --device cpu --models "$MODELS"
fi
mkdir -p "$WORK"
echo "work folder: $WORK"
lscpu | grep -E '^(Model name|CPU family|Model|CPU\(s\)):' | sed 's/  */ /g'

# Distinct copies of the demo's test images (same pixels, different names).
make_images() { # count dir
    mkdir -p "$2"
    mapfile -t src < <(find "$DEMO/data/demo_parts/test" -name '*.png' | sort)
    [ "${#src[@]}" -gt 0 ] || { echo "no demo test images under $DEMO" >&2; exit 1; }
    for ((i = 0; i < $1; i++)); do
        cp "${src[i % ${#src[@]}]}" "$(printf '%s/img_%05d.png' "$2" "$i")"
    done
}

# CPU seconds per thread name of PID (live threads), plus the process total (dead threads too).
cpu_snapshot() { # pid out
    python3 - "$1" > "$2" <<'EOF'
import os, sys
pid = sys.argv[1]
tick = os.sysconf("SC_CLK_TCK")
def cpu(stat):
    rest = stat[stat.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / tick
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        print(f"{tid}\t{name}\t{cpu(open(f'/proc/{pid}/task/{tid}/stat').read())}")
    except OSError:
        pass
print(f"total\ttotal\t{cpu(open(f'/proc/{pid}/stat').read())}")
EOF
}

cpu_split() { # before after wall_seconds
    python3 - "$1" "$2" "$3" <<'EOF'
import sys, collections, re
def load(p):
    return {l.split("\t")[0]: (l.split("\t")[1], float(l.split("\t")[2])) for l in open(p)}
a, b, wall = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
groups = collections.OrderedDict()
for tid, (name, t) in b.items():
    if tid == "total":
        continue
    d = t - a.get(tid, (name, 0.0))[1]
    # Numbered pool threads (llvmpipe-0, pc-rayon-1, ...) are summed under one name.
    key = re.sub(r"-\d+$", "-N", name)
    n, s = groups.get(key, (0, 0.0))
    groups[key] = (n + 1, s + d)
total = b["total"][1] - a["total"][1]
live = sum(s for _, s in groups.values())
groups["(threads that exited)"] = (0, total - live)
print(f"  {'thread':24} {'count':>5} {'cpu s':>8} {'share':>6}")
for key, (n, s) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    if s >= 0.05:
        print(f"  {key:24} {n:5d} {s:8.1f} {100 * s / max(total, 1e-9):5.1f}%")
print(f"  {'total':24} {'':5} {total:8.1f}  over {wall:.1f} s wall ({total / max(wall, 1e-9):.2f} cores busy)")
EOF
}

start_xvfb() {
    if ! xdpyinfo -display "$DISPLAY_NUM" > /dev/null 2>&1; then
        Xvfb "$DISPLAY_NUM" -screen 0 1600x1000x24 > "$WORK/xvfb.log" 2>&1 &
        XVFB=$!
        sleep 2
    fi
}

APP=""
cleanup() {
    [ -n "$APP" ] && kill "$APP" 2> /dev/null || true
    [ -n "${XVFB:-}" ] && kill "$XVFB" 2> /dev/null || true
}
trap cleanup EXIT

# Starts the app on a fresh config (its job log is $1/patchcore/jobs.log) watching inbox $2.
start_app() { # config inbox extra-env...
    local config=$1 inbox=$2
    shift 2
    mkdir -p "$config" "$inbox"
    env DISPLAY="$DISPLAY_NUM" XDG_CONFIG_HOME="$config" "$@" \
        "$BIN" gui --models "$DEMO/banks" --weights-dir "$MODELS" --inbox "$inbox" \
        --device cpu --batch-size "$BATCH" ${THREADS:+--threads "$THREADS"} \
        2>> "$WORK/app.err" &
    APP=$!
    # The bank loads and its test folder is scored first: wait for that job's line.
    wait_line "$config/patchcore/jobs.log" "kind=folder" 600
}

wait_line() { # file pattern timeout_s
    local t=0
    until grep -q -- "$2" "$1" 2> /dev/null; do
        kill -0 "$APP" 2> /dev/null || { echo "the app exited; see $WORK/app.err" >&2; exit 1; }
        sleep 1
        t=$((t + 1))
        [ "$t" -lt "$3" ] || { echo "timed out waiting for '$2' in $1" >&2; exit 1; }
    done
}

field() { # line key
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<< "$1"
}

# ---------------------------------------------------------------- throughput: N images
make_images "$N" "$WORK/images"
echo "predict: $N images"
"$BIN" predict --bank "$BANK" --device cpu --models "$MODELS" --batch-size "$BATCH" \
    "$WORK/images" > "$WORK/predict.out" 2> "$WORK/predict.err"
PREDICT_LINE=$(grep '^predict:' "$WORK/predict.out")
echo "  $PREDICT_LINE"
PREDICT_MS=$(sed -n 's/.*(\([0-9.]*\) ms per image).*/\1/p' <<< "$PREDICT_LINE")

start_xvfb
echo "app: $N images through the inbox"
start_app "$WORK/config" "$WORK/inbox"
cpu_snapshot "$APP" "$WORK/cpu.before"
T0=$(date +%s.%N)
find "$WORK/images" -name '*.png' -print0 | xargs -0 mv -t "$WORK/inbox"
# A screenshot of the status bar while scoring (in the background: the timing goes on).
if command -v import > /dev/null; then
    (sleep 15 && DISPLAY="$DISPLAY_NUM" import -window root "$WORK/app_scoring.png") &
fi
wait_line "$WORK/config/patchcore/jobs.log" "kind=inbox" $((N * 2 + 600))
cpu_snapshot "$APP" "$WORK/cpu.after"
T1=$(date +%s.%N)
LINE=$(grep 'kind=inbox' "$WORK/config/patchcore/jobs.log" | tail -1)
echo "  $LINE"
APP_MS=$(field "$LINE" ms_per_image)
IMAGES=$(field "$LINE" images)
[ "$IMAGES" = "$N" ] || echo "  warning: the inbox job logged $IMAGES images, not $N"
echo "app CPU time per thread over the inbox job:"
cpu_split "$WORK/cpu.before" "$WORK/cpu.after" "$(awk -v a="$T0" -v b="$T1" 'BEGIN { print b - a }')"
kill "$APP"
wait "$APP" 2> /dev/null || true
APP=""
echo "result: app $APP_MS ms/image, predict $PREDICT_MS ms/image, ratio $(awk -v a="$APP_MS" -v p="$PREDICT_MS" 'BEGIN { printf "%.2f", a / p }')"

# ---------------------------------------------------------------- frame time: SCROLL_N images
if [ "$SCROLL_N" -gt 0 ]; then
    echo "frame time: scrolling the gallery with $SCROLL_N images (scoring them meanwhile)"
    make_images "$SCROLL_N" "$WORK/scroll"
    start_app "$WORK/config-scroll" "$WORK/inbox-scroll" PATCHCORE_FRAME_LOG="$WORK/frames.log"
    find "$WORK/scroll" -name '*.png' -print0 | xargs -0 mv -t "$WORK/inbox-scroll"
    sleep 8 # two inbox polls: the images are listed (pending) in the gallery
    WIN=$(DISPLAY="$DISPLAY_NUM" xdotool search --name "PatchCore inspection" | head -1)
    DISPLAY="$DISPLAY_NUM" xdotool mousemove --window "$WIN" 800 500
    FROM=$(wc -l < "$WORK/frames.log")
    END=$(($(date +%s) + SCROLL_SECONDS))
    while [ "$(date +%s)" -lt "$END" ]; do
        DISPLAY="$DISPLAY_NUM" xdotool click --repeat 40 --delay 25 5
        DISPLAY="$DISPLAY_NUM" xdotool click --repeat 20 --delay 25 4
    done
    TO=$(wc -l < "$WORK/frames.log")
    command -v import > /dev/null && DISPLAY="$DISPLAY_NUM" import -window root "$WORK/app_scroll.png" || true
    sed -n "$((FROM + 1)),${TO}p" "$WORK/frames.log" | python3 -c '
import sys, statistics
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
for i, what in ((0, "interval"), (1, "cpu")):
    v = sorted(r[i] for r in rows if r[i] == r[i])
    if v:
        p95 = v[min(len(v) - 1, int(0.95 * len(v)))]
        print(f"  frame {what:8}: median {statistics.median(v):6.1f} ms, p95 {p95:6.1f} ms, max {v[-1]:6.1f} ms over {len(v)} frames")
'
    kill "$APP"
    wait "$APP" 2> /dev/null || true
    APP=""
fi
echo "logs, screenshots and copies in $WORK"
