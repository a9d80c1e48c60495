#!/usr/bin/env bash
# Runs ON the bare GPU machine (torch + CUDA toolkit, no Node, no network), from the repository root, with the
# .gpu/ folder made by scripts/gpu/pack.sh carried along. Phases (each resumable; outputs are reused when present):
#
#   setup   node from .gpu/node.xz into /tmp/st2v-node (put first on PATH), node_modules/ and dist/ from .gpu/
#   build   the addon with cmake-js, offline, against the torch of $TORCH_PYTHON (default python3) and $CUDA_HOME
#   tiny    models/tiny exported with the device's torch when missing (kept in .gpu-work/models/tiny)
#   tests   the vitest files with CUDA tests (quick: test/native/module{,-move}.test.ts, test/pipeline/{precision,options}.test.ts;
#           full: + test/native, test/cli); without CUDA those tests are reported as skipped
#   smoke   a tiny generation on CUDA (fp32 and fp16) and on CPU, frames compared (smoke.json)
#   flops   FLOPs per UNet call at the full sizes (bench/py/unet_flops.py, torch >= 2.1) -> flops.json
#   full    a FULL-SIZE random-weight model directory (benchmark only), fp16: .gpu-work/models/full-random
#   bench   node bench/gpu.mjs on it (CUDA), or a CPU smoke run on models/tiny without CUDA -> bench.json
#
#   bash scripts/gpu/run-on-device.sh --quick                 # setup build tiny tests(quick) smoke
#   bash scripts/gpu/run-on-device.sh --phase bench           # build flops full bench (BENCH_ARGS="..." replaces
#                                                             # the benchmark's flags; DEADLINE_S=570 bounds it)
#   bash scripts/gpu/run-on-device.sh                         # everything (more than one 10-minute call on a GPU)
#
# Writes into $OUT (default .gpu-work/out), flat: run.log, summary.txt, tests.json, smoke.json, flops.json,
# bench.json, and after a build streamingt2v.node + addon-stamp.txt: put those two into .gpu/addon/ and the next
# call on a bare machine skips the build (they are used only when torch and the binding sources are the same).
# Every step that cannot work stops the script with "run-on-device: FAILED: ...".
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/.gpu-work
mkdir -p "$WORK"
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
QUICK=0
PHASES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --phase|--phases) PHASES=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run-on-device: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$PHASES" ]; then
  if [ "$QUICK" = 1 ]; then PHASES=setup,build,tiny,tests,smoke; else PHASES=setup,build,tiny,tests,smoke,flops,full,bench; fi
fi
# A machine is given back 30 s after a call, so every call must be able to start from a bare machine: phases pull in
# what they need (each one reuses its output when it is already there, so on a warm machine this costs nothing).
add_phase() { case ",$PHASES," in *,"$1",*) ;; *) PHASES="$PHASES,$1" ;; esac; }
add_phase setup
case ",$PHASES," in *,tests,*|*,smoke,*) add_phase build; add_phase tiny ;; esac
case ",$PHASES," in *,bench,*) add_phase build; add_phase flops; add_phase full; add_phase tiny ;; esac
DEADLINE_S=${DEADLINE_S:-570}   # the device runs one command for at most 600 s
exec > >(tee -a "$OUT/run.log") 2>&1
SUMMARY=$OUT/summary.txt
note() { echo "$*" | tee -a "$SUMMARY"; }
die() { note "run-on-device: FAILED: $*"; exit 1; }
has_phase() { case ",$PHASES," in *,"$1",*) return 0 ;; *) return 1 ;; esac; }
T0=$(date +%s)
phase_start() { PHASE=$1; PT=$(date +%s); echo; echo "=== $1 ($(date -u +%H:%M:%S), +$(( PT - T0 )) s)"; }
phase_ok() { note "$PHASE: ok ($(( $(date +%s) - PT )) s)${1:+ - $1}"; }
note "run-on-device $(date -u +%Y-%m-%dT%H:%M:%SZ) phases=$PHASES quick=$QUICK host=$(hostname)"

unxz_to() {  # unxz_to FILE.xz DEST: xz, or Python's lzma where xz is not installed
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else "$PY" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
untar_xz() {  # untar_xz FILE.tar.xz: into the repository root
  if command -v xz >/dev/null; then tar -xJf "$1"; else "$PY" -c 'import sys,tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(".")' "$1"; fi
}

# ---- torch / python (needed by every phase: building, exporting, FLOPs) ----
PY=${TORCH_PYTHON:-python3}
command -v "$PY" >/dev/null || die "no python: $PY is not on PATH (set TORCH_PYTHON to the python that has torch)"
PY=$(command -v "$PY")
TORCH_LINE=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda or "none", int(torch.cuda.is_available()), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")' 2>&1) \
  || die "$PY cannot import torch: $TORCH_LINE"
read -r TORCH_VERSION TORCH_CUDA CUDA_OK GPU_NAME <<<"$TORCH_LINE"
export TORCH_PYTHON=$PY
note "torch $TORCH_VERSION (CUDA build: $TORCH_CUDA, GPU visible: $CUDA_OK ${GPU_NAME}) from $PY"

# ---- setup ----
NODE_DIR=/tmp/st2v-node
NODE=$NODE_DIR/bin/node
phase_start setup
[ -f .gpu/node.xz ] || die ".gpu/node.xz is missing: run scripts/gpu/pack.sh on the development machine and carry .gpu"
if [ ! -x "$NODE" ] || [ "$(cat "$NODE_DIR/.stamp" 2>/dev/null)" != "$(cat .gpu/node.version 2>/dev/null)" ]; then
  mkdir -p "$NODE_DIR/bin"
  unxz_to .gpu/node.xz "$NODE.tmp" || die "could not unpack .gpu/node.xz"
  chmod +x "$NODE.tmp" && mv "$NODE.tmp" "$NODE"
  cat .gpu/node.version > "$NODE_DIR/.stamp" 2>/dev/null || true
fi
"$NODE" --version >/dev/null || die "the unpacked node does not run ($NODE)"
export PATH=$NODE_DIR/bin:$PATH       # child processes that spawn `node` get this one
stamp=$(cat .gpu/MANIFEST 2>/dev/null | grep '^packed' || true)
if [ ! -f node_modules/.gpu-stamp ] || [ "$(cat node_modules/.gpu-stamp)" != "$stamp" ]; then
  rm -rf node_modules dist
  untar_xz .gpu/node_modules.tar.xz || die "could not unpack .gpu/node_modules.tar.xz"
  echo "$stamp" > node_modules/.gpu-stamp
fi
rm -rf dist && untar_xz .gpu/dist.tar.xz || die "could not unpack .gpu/dist.tar.xz"
find dist -type f -exec touch {} +   # newer than lib/*.ts: tests must not try to rebuild dist/ (no TypeScript here)
[ -f node_modules/cmake-js/bin/cmake-js ] && [ -f node_modules/vitest/vitest.mjs ] && [ -f dist/lib/index.js ] \
  || die "node_modules or dist incomplete after unpacking .gpu/"
ADDON=build/Release/streamingt2v.node
ADDON_STAMP="torch $TORCH_VERSION cuda $TORCH_CUDA $PY $(cat CMakeLists.txt binding/* | sha256sum | cut -c1-16)"
if [ ! -f "$ADDON" ] && [ -f .gpu/addon/streamingt2v.node ] && [ "$(cat .gpu/addon/addon-stamp.txt 2>/dev/null)" = "$ADDON_STAMP" ]; then
  mkdir -p build/Release && cp .gpu/addon/streamingt2v.node "$ADDON" && echo "$ADDON_STAMP" > build/.gpu-stamp
  echo "using the carried addon .gpu/addon/streamingt2v.node (same torch and binding sources)"
fi
phase_ok "node $("$NODE" --version) at $NODE"

# ---- build ----
if has_phase build; then
  phase_start build
  command -v cmake >/dev/null || die "cmake is not on PATH (pip install cmake, or the system package)"
  if [ "$TORCH_CUDA" != none ]; then
    if [ -z "${CUDA_HOME:-}" ]; then
      for c in "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /nonexistent/bin/nvcc)")")" /usr/local/cuda; do
        [ -x "$c/bin/nvcc" ] && { CUDA_HOME=$c; break; }
      done
    fi
    [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ] \
      || die "torch is a CUDA build ($TORCH_CUDA) but no nvcc was found: set CUDA_HOME to the CUDA toolkit (nvcc $TORCH_CUDA)"
    export CUDA_HOME
    note "CUDA toolkit: $CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -n1))"
  fi
  addon=$ADDON
  if [ -f "$addon" ] && [ "$(cat build/.gpu-stamp 2>/dev/null)" = "$ADDON_STAMP" ]; then
    echo "reusing $addon (built from the same binding sources against the same torch)"
  else
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
    "$NODE" node_modules/cmake-js/bin/cmake-js rebuild --log-level info > "$WORK/build.log" 2>&1 \
      || { tail -n 60 "$WORK/build.log"; die "addon build failed (cmake-js rebuild; full log above and in .gpu-work/build.log)"; }
    grep -E 'streamingt2v: libtorch|Ninja|Unix Makefiles' "$WORK/build.log" || true
    echo "$ADDON_STAMP" > build/.gpu-stamp
  fi
  cp "$addon" "$OUT/streamingt2v.node" && cp build/.gpu-stamp "$OUT/addon-stamp.txt"
  INFO=$("$NODE" --input-type=module -e "
    const m = await import('./dist/lib/index.js');
    console.log(JSON.stringify({ cuda: m.cudaAvailable(), devices: m.cudaDeviceCount(), info: m.torchInfo() }));" 2>&1) \
    || die "the addon does not load: $INFO"
  echo "$INFO"
  if [ "$CUDA_OK" = 1 ] && ! grep -q '"cuda":true' <<<"$INFO"; then
    die "python sees the GPU but the addon does not (cudaAvailable() false): was it linked against a CPU libtorch? $INFO"
  fi
  phase_ok "addon $(stat -c %s "$addon") bytes, cudaAvailable=$(grep -o '"cuda":[a-z]*' <<<"$INFO" | cut -d: -f2)"
fi

# ---- tiny model ----
if has_phase tiny; then
  phase_start tiny
  if [ ! -f models/tiny/manifest.json ]; then
    if [ ! -f "$WORK/models/tiny/manifest.json" ]; then
      # --allow-new-ops: this directory is only loaded by this machine's libtorch, not by libtorch 1.13
      "$PY" -m models.export --config tiny --allow-new-ops --out "$WORK/models/tiny.tmp" > "$WORK/export-tiny.log" 2>&1 \
        || { tail -n 30 "$WORK/export-tiny.log"; die "python3 -m models.export --config tiny failed"; }
      rm -rf "$WORK/models/tiny" && mv "$WORK/models/tiny.tmp" "$WORK/models/tiny"
    fi
    mkdir -p models/tiny && cp -r "$WORK/models/tiny/." models/tiny/
    phase_ok "exported with torch $TORCH_VERSION"
  else
    phase_ok "models/tiny present"
  fi
fi

# ---- tests ----
if has_phase tests; then
  phase_start tests
  files=(test/native/module.test.ts test/native/module-move.test.ts test/pipeline/precision.test.ts test/pipeline/options.test.ts)
  [ "$QUICK" = 1 ] || files=(test/native test/pipeline/precision.test.ts test/pipeline/options.test.ts test/cli/cli.test.ts)
  set +e
  "$NODE" node_modules/vitest/vitest.mjs run "${files[@]}" --reporter=default --reporter=json --outputFile="$OUT/tests.json"
  vrc=$?
  set -e
  [ -f "$OUT/tests.json" ] || die "vitest wrote no report (exit $vrc)"
  line=$("$NODE" -e '
    const j = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const cuda = j.testResults.flatMap((f) => f.assertionResults).filter((a) => a.ancestorTitles.includes("CUDA"));
    const by = (s) => cuda.filter((a) => a.status === s).length;
    console.log(`${j.numPassedTests} passed, ${j.numFailedTests} failed, ${j.numPendingTests + (j.numTodoTests ?? 0)} skipped; CUDA tests: ${by("passed")} passed, ${by("failed")} failed, ${cuda.length - by("passed") - by("failed")} skipped`);' "$OUT/tests.json")
  [ "$vrc" = 0 ] || die "tests: $line (vitest exit $vrc; see run.log / tests.json)"
  phase_ok "$line"
fi

# ---- smoke ----
if has_phase smoke; then
  phase_start smoke
  [ -f models/tiny/manifest.json ] || die "models/tiny is missing (run the tiny phase)"
  "$NODE" --input-type=module - "$OUT/smoke.json" <<'JS' || die "smoke generation failed"
import { writeFileSync } from 'node:fs';
const m = await import('./dist/lib/index.js');
const runs = [];
async function gen(device, dtype) {
  const pipe = await m.StreamingT2VPipeline.load({ modelDir: 'models/tiny', device, dtype });
  const frames = { preview: [], final: [] };
  const t0 = performance.now();
  for await (const f of pipe.generate({ prompt: 'a red circle bouncing', numFrames: 24, seed: 33, stage1: { steps: 4 }, stage2: { steps: 4 }, enhance: { steps: 3 } })) frames[f.stage].push(Buffer.from(f.data));
  const seconds = (performance.now() - t0) / 1000;
  const peak = device.startsWith('cuda') ? (await m.cudaMemoryStats(device)).peakAllocated : m.cpuMemoryStats().peakAllocated;
  pipe.dispose();
  const r = { device, dtype, seconds, preview: frames.preview.length, final: frames.final.length, peakAllocated: peak, bytes: { preview: Buffer.concat(frames.preview), final: Buffer.concat(frames.final) } };
  console.log(`${device} ${dtype}: ${r.preview} preview + ${r.final} final frames in ${seconds.toFixed(2)} s, peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
  if (r.preview !== 24 || r.final !== 24) throw new Error(`${device} ${dtype}: expected 24 + 24 frames`);
  return r;
}
const diff = (a, b) => {
  let max = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max) max = d;
    if (d) n++;
  }
  return { maxAbs: max, differingFraction: n / a.length };
};
const cpu = await gen('cpu', 'float32');
runs.push(cpu);
const cuda = m.cudaAvailable();
if (cuda) {
  for (const dtype of ['float32', 'float16']) {
    const r = await gen('cuda', dtype);
    r.vsCpu = { preview: diff(r.bytes.preview, cpu.bytes.preview), final: diff(r.bytes.final, cpu.bytes.final) };
    console.log(`  vs cpu float32: preview ${JSON.stringify(r.vsCpu.preview)}, final ${JSON.stringify(r.vsCpu.final)}`);
    runs.push(r);
  }
} else console.log('no CUDA in this addon/machine: smoke ran on the CPU only');
writeFileSync(process.argv[2], JSON.stringify({ cuda, torch: m.torchInfo(), runs: runs.map(({ bytes, ...r }) => r) }, null, 1));
JS
  phase_ok "$(grep -c '"device"' "$OUT/smoke.json") runs, see smoke.json"
fi

# ---- FLOPs ----
if has_phase flops; then
  phase_start flops
  set +e
  "$PY" bench/py/unet_flops.py --config full --out "$WORK/flops.json" > /dev/null
  frc=$?
  set -e
  if [ "$frc" = 3 ]; then note "flops: skipped (needs torch >= 2.1, this is $TORCH_VERSION)"
  elif [ "$frc" != 0 ]; then die "bench/py/unet_flops.py failed (exit $frc)"
  else cp "$WORK/flops.json" "$OUT/flops.json"; phase_ok "see flops.json"; fi
fi

# ---- full-size random model ----
FULL=${FULL_MODEL:-$WORK/models/full-random}
if has_phase full; then
  phase_start full
  if [ -f "$FULL/manifest.json" ]; then
    phase_ok "reusing $FULL"
  elif [ "$CUDA_OK" != 1 ] && [ -z "${FORCE_FULL:-}" ]; then
    note "full: skipped (no CUDA; the full-size export needs ~25 GB of RAM and a long CPU time; FORCE_FULL=1 forces it)"
  else
    dev=cuda; [ "$CUDA_OK" = 1 ] || dev=cpu
    df -h "$WORK" | tail -n 1
    "$PY" -m models.export --config full --random-weights --dtype fp16 --device "$dev" --allow-new-ops \
      --out "$FULL.tmp" 2>&1 | tee "$WORK/export-full.log" || true
    [ -f "$FULL.tmp/manifest.json" ] || die "full-size export failed (see run.log)"
    rm -rf "$FULL" && mv "$FULL.tmp" "$FULL"
    phase_ok "$(du -sh "$FULL" | cut -f1) in $FULL"
  fi
fi

# ---- benchmark ----
if has_phase bench; then
  phase_start bench
  if [ "$CUDA_OK" = 1 ]; then
    [ -f "$FULL/manifest.json" ] || die "no full-size model at $FULL (run the full phase)"
    flops_arg=(); [ -f "$WORK/flops.json" ] && flops_arg=(--flops "$WORK/flops.json")
    # shellcheck disable=SC2206
    bargs=(${BENCH_ARGS:---frames 80,240 --budgets none,24 --steps 2/3/3})
    left=$(( DEADLINE_S - ($(date +%s) - T0) ))
    [ "$left" -gt 60 ] || die "only $left s left of DEADLINE_S=$DEADLINE_S for the benchmark: run --phase bench again (the machine is warm for 30 s)"
    "$NODE" bench/gpu.mjs --model "$FULL" --device cuda "${flops_arg[@]}" --deadline-s "$left" "${bargs[@]}" --out "$OUT/bench.json" \
      || die "bench/gpu.mjs failed"
  else
    # shellcheck disable=SC2206
    bargs=(${BENCH_ARGS:---frames 24 --steps 2/2/2 --budgets none,1 --threads 1})
    "$NODE" bench/gpu.mjs --device cpu --config tiny --python "$PY" "${bargs[@]}" --out "$OUT/bench.json" \
      || die "bench/gpu.mjs (CPU smoke) failed"
    note "bench: CPU smoke run only (no CUDA): the numbers are meaningless"
  fi
  phase_ok "see bench.json"
fi
note "done in $(( $(date +%s) - T0 )) s"
