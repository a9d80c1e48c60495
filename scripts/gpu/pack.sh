#!/usr/bin/env bash
# Prepares what a bare GPU machine (torch + CUDA, no Node, no network) needs to build, test and benchmark this
# package, in the ignored folder .gpu/ (carried to the machine by the device tool as one "carry" path):
#   .gpu/node.xz              this machine's node binary (xz -9)
#   .gpu/node_modules.tar.xz  only the packages the device needs: cmake-js (+ node-api-headers, offline build),
#                             node-addon-api, node-gyp-build, @huggingface/tokenizers, vitest (+ vite, rolldown), fast-check
#   .gpu/dist.tar.xz          the compiled TypeScript (dist/), so no TypeScript is needed there
#   .gpu/MANIFEST             versions and sizes
# Then it checks that the working tree the device tool copies (tracked + untracked-not-ignored files, WITHOUT
# models/tiny and models/default, which the device re-exports) plus .gpu/ stays under the 64 MiB limit, and prints
# the exact commands of the GPU session.
#
#   bash scripts/gpu/pack.sh [--threads 2] [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
THREADS=2
SKIP_BUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "pack.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "pack.sh: ERROR: $*" >&2; exit 1; }

NODE_BIN=$(command -v node) || die "node is not on PATH (this script runs on the development machine)"
NODE_BIN=$(readlink -f "$NODE_BIN")
command -v xz >/dev/null || die "xz is not installed (apt-get install xz-utils)"
[ -d node_modules/cmake-js ] || die "node_modules is missing: run npm ci first"
[ -d node_modules/node-api-headers ] || die "node_modules/node-api-headers is missing (cmake-js needs it to build offline)"

if [ "$SKIP_BUILD" = 0 ]; then
  echo "== npm run build"
  npm run build >/dev/null || die "npm run build failed"
fi
[ -f dist/lib/index.js ] || die "dist/lib/index.js is missing (npm run build)"

mkdir -p .gpu
OUTDIR=$ROOT/.gpu

# ---- node ----
node_version=$("$NODE_BIN" --version)
if [ -f .gpu/node.xz ] && [ "$(cat .gpu/node.version 2>/dev/null)" = "$node_version $(stat -c %s "$NODE_BIN")" ]; then
  echo "== node.xz is current ($node_version)"
else
  echo "== node $node_version ($NODE_BIN) -> .gpu/node.xz (xz -9 -T$THREADS, about a minute)"
  xz -9 -T"$THREADS" -c "$NODE_BIN" > .gpu/node.xz.tmp
  mv .gpu/node.xz.tmp .gpu/node.xz
  echo "$node_version $(stat -c %s "$NODE_BIN")" > .gpu/node.version
fi

# ---- node_modules: the dependency closure of the packages the device needs ----
echo "== node_modules closure"
"$NODE_BIN" - "$ROOT" > .gpu/node_modules.list <<'JS'
const { existsSync, readFileSync } = require('node:fs');
const { dirname, join, relative } = require('node:path');
const root = process.argv[2];
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// runtime deps (tokenizers, node-gyp-build, cmake-js, node-addon-api), the offline header package of cmake-js,
// and the test runner with what the tests import; NOT typescript (dist/ is carried compiled).
const roots = [...Object.keys(pkg.dependencies ?? {}), 'node-api-headers', 'vitest', 'fast-check'];
const seen = new Set();
function resolveFrom(dir, name) {
  for (let d = dir; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (d === root || d === dirname(d)) return null;
  }
}
function visit(dir, name, optional) {
  const p = resolveFrom(dir, name);
  if (p === null) {
    if (!optional) { console.error(`missing package ${name} (needed from ${relative(root, dir) || '.'})`); process.exitCode = 1; }
    return;
  }
  if (seen.has(p)) return;
  seen.add(p);
  const j = JSON.parse(readFileSync(join(p, 'package.json'), 'utf8'));
  for (const d of Object.keys(j.dependencies ?? {})) visit(p, d, false);
  for (const d of Object.keys(j.optionalDependencies ?? {})) visit(p, d, true); // platform binaries that are installed
  const meta = j.peerDependenciesMeta ?? {};
  for (const d of Object.keys(j.peerDependencies ?? {})) visit(p, d, meta[d]?.optional !== false);
}
for (const r of roots) visit(root, r, false);
for (const p of [...seen].sort()) console.log(relative(root, p));
JS
[ -s .gpu/node_modules.list ] || die "empty node_modules closure"
grep -qx 'node_modules/typescript' .gpu/node_modules.list && die "typescript ended up in the closure"
echo "   $(wc -l < .gpu/node_modules.list) packages, $(xargs du -sc < .gpu/node_modules.list | tail -n1 | cut -f1) KiB raw"
tar -cf - -T .gpu/node_modules.list | xz -9 -T"$THREADS" > .gpu/node_modules.tar.xz
tar -cf - dist | xz -9 -T"$THREADS" > .gpu/dist.tar.xz

# ---- sizes ----
{
  echo "node $node_version"
  for p in cmake-js node-api-headers node-addon-api vitest vite @huggingface/tokenizers; do
    echo "$p $("$NODE_BIN" -p "require('./node_modules/$p/package.json').version")"
  done
  echo "git $(git rev-parse HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > .gpu/MANIFEST

# What the device tool copies: tracked files (as they are in the working tree) + untracked files git does not
# ignore, minus models/tiny and models/default (removed before the run call), plus the carried .gpu/.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard \
  | grep -zv -E '^models/(tiny|default)/' \
  | "$NODE_BIN" -e '
      const fs = require("node:fs");
      let n = 0;
      for (const f of fs.readFileSync(0, "utf8").split("\0")) {
        if (!f) continue;
        try { const s = fs.lstatSync(f); if (s.isFile()) n += s.size; } catch {}
      }
      console.log(n);')
gpu_bytes=$(du -sb .gpu | cut -f1)
total=$(( tree_bytes + gpu_bytes ))
limit=$(( 64 * 1024 * 1024 ))
margin=$(( 8 * 1024 * 1024 ))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo
echo "== sizes"
for f in node.xz node_modules.tar.xz dist.tar.xz; do printf '   .gpu/%-22s %s\n' "$f" "$(mib "$(stat -c %s .gpu/$f)")"; done
printf '   %-28s %s\n' ".gpu/ total" "$(mib "$gpu_bytes")"
printf '   %-28s %s\n' "working tree w/o models" "$(mib "$tree_bytes")"
printf '   %-28s %s (limit 64 MiB, wanted margin 8 MiB)\n' "copied to the device" "$(mib "$total")"
[ "$total" -lt $(( limit - margin )) ] || die "the device copy would be $(mib "$total"): over 64 MiB minus the margin"

cat <<TXT

== GPU session (the device tool's run; one command at most 600 s; at present 15 min of device time a session, the
   cold start included, so plan on ONE full call: run 1, or run 2 with a prebuilt addon, or the training script;
   the machine is given back 30 s after a call, so each call starts from a bare machine unless the next one follows
   at once):
  before:  mkdir -p /tmp/st2v-aside && mv models/tiny models/default /tmp/st2v-aside/
  run 1:   command: bash scripts/gpu/run-on-device.sh --quick     carry: [".gpu"]   timeout_s: 600
           (unpack, build the addon against the device's CUDA torch, export models/tiny there, CUDA tests, smoke)
  then:    mkdir -p .gpu/addon && cp FILES_AT/streamingt2v.node FILES_AT/addon-stamp.txt .gpu/addon/
           (FILES_AT = the reply's files_at; the next call then skips the build)
  run 2:   command: bash scripts/gpu/run-on-device.sh --phase bench   carry: [".gpu"]   timeout_s: 600
           (FLOPs per UNet call, the full-size random-weight fp16 model (~12 GiB, in .gpu-work/), bench/gpu.mjs:
            80 and 240 frames, no budget and vramBudget 24 GiB, within DEADLINE_S=570; BENCH_ARGS='...' replaces its flags)
  after:   mv /tmp/st2v-aside/tiny /tmp/st2v-aside/default models/   (or: git checkout -- models/tiny models/default)
  Results come back from \$OUT: summary.txt, run.log, tests.json, smoke.json, flops.json, bench.json,
  streamingt2v.node, addon-stamp.txt.
TXT
