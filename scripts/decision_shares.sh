#!/usr/bin/env bash
# Share of images per decision (accept / review / reject / error), by the folder each image sits
# in (good, broken_large, ...), from a `patchcore predict --csv` file. The README's decision-band
# table comes from this. Usage: scripts/decision_shares.sh predictions.csv
set -euo pipefail
csv=${1:?usage: $0 predictions.csv}
# Column 5 is `decision`; the paths here hold no commas (awk splits naively on purpose: a quoted
# path with a comma would be reported under a wrong folder, so refuse it).
awk -F, 'NR > 1 {
    if ($1 ~ /^"/) { print "quoted path in " FILENAME ": not supported" > "/dev/stderr"; exit 2 }
    n = split($1, p, "/"); folder = p[n - 1]; kind = (folder == "good") ? "good" : "defective";
    total[kind]++; count[kind "," $5]++
  }
  END {
    printf "| images | n | accept | review | reject | error |\n|---|---|---|---|---|---|\n";
    for (k in total) {
      printf "| %s | %d", k, total[k];
      split("accept review reject error", d, " ");
      for (i = 1; i <= 4; i++) printf " | %d (%.0f %%)", count[k "," d[i]], 100 * count[k "," d[i]] / total[k];
      printf " |\n";
    }
  }' "$csv"
