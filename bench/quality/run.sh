#!/usr/bin/env bash
# The whole quality benchmark of issue 6 in one command (two processes at a time, one thread each):
#   ablated models -> 240-frame videos (full model: N prompts; no-CAM / no-APM / no cut guard / no overlap replacement: NA prompts) -> stage 3 with and
#   without randomized blending (2 prompts, 80 frames) -> metrics table (+ the `world` row of true renders) -> grid.
#
#   npm run build && bench/quality/run.sh [MODEL_DIR=models/default] [OUT=/tmp/st2v-quality] [N=24] [NA=8]
#
# Prints the table of metrics.py; writes OUT/metrics.json and OUT/grid.png. See bench/quality/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/default}
OUT=${2:-/tmp/st2v-quality}
N=${3:-24}
NA=${4:-8}
PY=/usr/bin/python3
mkdir -p "$OUT"
$PY bench/quality/ablate.py --model "$MODEL" --out "$OUT/models" --kinds nocam,noapm
gen() { node bench/quality/generate.mjs --out "$OUT/videos" --threads 1 "$@"; }
half=$(( N / 2 ))
gen --tag full --model "$MODEL" --from 0 --limit "$half" & p1=$!
gen --tag full --model "$MODEL" --from "$half" --limit "$N" & p2=$!
wait $p1 $p2
# no CAM = independent windows: overlap replacement (which also carries the previous frames) and the cut guard
# (which would retry windows that do not continue anything) off as well
gen --tag nocam --model "$OUT/models/nocam" --limit "$NA" --replace-overlap 0 --cut-retries 0 & p1=$!
gen --tag noapm --model "$OUT/models/noapm" --limit "$NA" & p2=$!
wait $p1 $p2
half_a=$(( NA / 2 ))
# the full model without the cut guard (the model's default until session 21), prompts 1..NA
gen --tag noguard --model "$MODEL" --limit "$half_a" --cut-retries 0 & p1=$!
gen --tag noguard --model "$MODEL" --from "$half_a" --limit "$NA" --cut-retries 0 & p2=$!
wait $p1 $p2
# the official stage-2 path (no overlap replacement, no cut guard) for comparison, prompts 1..NA
gen --tag norepl --model "$MODEL" --limit "$half_a" --replace-overlap 0 --cut-retries 0 & p1=$!
gen --tag norepl --model "$MODEL" --from "$half_a" --limit "$NA" --replace-overlap 0 --cut-retries 0 & p2=$!
wait $p1 $p2
gen --tag enh-blend --model "$MODEL" --limit 2 --frames 80 --enhance --overlap 8 & p1=$!
gen --tag enh-noblend --model "$MODEL" --limit 2 --frames 80 --enhance --overlap 0 & p2=$!
wait $p1 $p2
$PY bench/quality/metrics.py "$OUT/videos" --reference "$N" --json "$OUT/metrics.json"
$PY bench/quality/grid.py "$OUT/videos/full" --out "$OUT/grid.png" --cols 8 --limit 6
