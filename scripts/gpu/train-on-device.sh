#!/usr/bin/env bash
# Runs ON a GPU machine (python3 with torch + CUDA; no Node needed): the default model's training recipe
# (models.train.all) on CUDA in one call of under 10 minutes, from the repository root. Nothing needs carrying.
#
#   bash scripts/gpu/train-on-device.sh                     # TRAIN_ARGS="..." replaces the recipe flags below
#
# Writes into $OUT (default .gpu-work/out), flat, at most 8 files of < 16 MiB (what a device call brings back):
# vae.npz vae_ft.npz stage1.npz stage1_centred.npz (or stage1_more.npz) stage2_turn.npz (or stage2.npz)
# enhancer.npz losses.jsonl train.log. The .npz files are the finished <component>.pt files packed by
# models.train.portable (tensors as NumPy arrays + a JSON skeleton), because torch.load is not forward compatible:
# a .pt written by the device's torch 2.x is not promised to load in Debian's torch 1.13. Back on the CPU machine,
# unpack them into a directory and export with torch 1.13 (TorchScript saved by torch 2.x does not load in
# libtorch 1.13 either):
#
#   /usr/bin/python3 -m models.train.portable unpack <files_at>/*.npz --out-dir /tmp/st2v-gpu
#   cp <files_at>/losses.jsonl /tmp/st2v-gpu/
#   /usr/bin/python3 -m models.train.all --out /tmp/st2v-gpu --collect
#   /usr/bin/python3 -m models.export --config tiny --weights /tmp/st2v-gpu/weights.pt --out models/default \
#       --name default --prediction-type v_prediction --defaults models/train/default-defaults.json --prompt-words core
#
# The schedule is the CPU recipe 3's (session 13: the shipped model's chain, stage 1 -> stage1_centred ->
# stage2_turn with the turn set; vae_ft and the enhancer in a second process), each component stopped by its share
# of BUDGET_MIN minutes (models/train/all.py SHARE3) or by its step count, whichever comes first; the losses log
# says which ("stopped by wall-clock budget"). TRAIN_ARGS without --recipe 3 gives recipe 2 (stage2.pt).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-.gpu-work/out}
WORK=${WORK:-.gpu-work/train}
PY=${TORCH_PYTHON:-python3}
BUDGET_MIN=${BUDGET_MIN:-8}
DEVICE=${DEVICE:-cuda}      # DEVICE=cpu: the same script on the CPU (models/tests/test_train_smoke.py runs it so)
TRAIN_ARGS=${TRAIN_ARGS:-"--recipe 3 --steps-scale 4 --batch-mult 4 --cam-init small --cam-lr-mult 5 --motion-loss 1 --terminal-p 0.15 --turn-p 0.5 --turn-terminal-p 0.5 --vertical-p 0.6 --vertical-p-stage1 0.75"}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
  "$PY" -c 'import torch, sys; ok = torch.cuda.is_available(); print("torch", torch.__version__, "cuda", ok, torch.cuda.get_device_name(0) if ok else "-"); sys.exit(0 if ok else 3)' \
    || { echo "train-on-device: FAILED: $PY sees no CUDA device" | tee -a "$OUT/train.log"; exit 1; }
fi
t0=$(date +%s)
# shellcheck disable=SC2086
"$PY" -m models.train.all --out "$WORK" --device "$DEVICE" --budget-minutes "$BUDGET_MIN" $TRAIN_ARGS 2>&1 | tee -a "$OUT/train.log"
echo "train-on-device: training took $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
# stage1_centred.pt replaces stage1_more.pt where it finished (its UNet is the later one; at most 8 files come back)
last_s1=stage1_more.pt; [ -f "$WORK/stage1_centred.pt" ] && last_s1=stage1_centred.pt
last_s2=stage2.pt; [ -f "$WORK/stage2_turn.pt" ] && last_s2=stage2_turn.pt      # recipe 3 trains stage2_turn only
for f in vae.pt vae_ft.pt stage1.pt "$last_s1" "$last_s2" enhancer.pt; do
  if [ -f "$WORK/$f" ]; then
    if "$PY" -m models.train.portable pack "$WORK/$f" --out-dir "$OUT" >> "$OUT/train.log" 2>&1; then
      tail -n 1 "$OUT/train.log"
    else
      tail -n 3 "$OUT/train.log"; echo "train-on-device: FAILED: packing $f" | tee -a "$OUT/train.log"; exit 1
    fi
  else
    echo "train-on-device: missing $f" | tee -a "$OUT/train.log"
  fi
done
if [ -f "$WORK/losses.jsonl" ]; then cp "$WORK/losses.jsonl" "$OUT/"; else echo "train-on-device: missing losses.jsonl" | tee -a "$OUT/train.log"; fi
# the two processes' own logs end up in train.log too (for the step times)
for f in "$WORK"/*_log.txt; do [ -f "$f" ] && { echo "== $f"; tail -n 5 "$f"; } >> "$OUT/train.log"; done
ls -la "$OUT"
