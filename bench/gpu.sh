#!/usr/bin/env bash
# One script for a lent GPU machine: install what is missing, check everything the steps need,
# then measure pose (pipeline vs ultralytics batched predict vs forward alone; the pipeline's own
# cost with a stand-in network), the T-MOR training step, embed (pipeline vs forward alone;
# frames decoded per clip), the trainer's reader and MotionBERT lifting; write one JSON of figures.
#
#   bash bench/gpu.sh [OUT.json]          on the GPU machine (default: $OUT/gpu_bench.json, else
#                                         ./gpu_bench.json); exit 0 when every step gave figures
#   PREPARE=1 bash bench/gpu.sh           here, before a device run: fill shared/ in the checkout
#                                         (data, clips encoded as fetch leaves them, wheels)
#   SMOKE=1 bash bench/gpu.sh OUT.json    every step at small sizes on whatever device torch finds
#   DRY_RUN=1 bash bench/gpu.sh           print the steps, run nothing
#
# The plan for the 15 minutes of device time (one H100/H200, 16 cores, no network, python3 with
# torch 2.11 cu130; KINDS.md). Start-up and the copy of the checkout: ~2-4 minutes. Then:
#
#   step        limit  what it gives (most worth having first)
#   install       75 s  30 s to see what does not import, 45 s of pip (--no-deps, shared/wheels)
#   preflight     30 s  data, weights, clips, ffmpeg, modules, GPU: one line each, exit 2
#   pose         100 s  pipeline vs predict vs forward, fp16, batch 128 (goal >= 0.5x forward)
#   train         60 s  T-MOR step vs supervised step vs inference, bf16, batch 256; a tiny
#                       run stopped after epoch 1 and resumed (DBSCAN on the GPU, checkpoint)
#   embed         55 s  pipeline vs forward, ViT-B-32 (random weights); naive loop on 32 clips
#   reader        40 s  reader samples/s per worker (and 8 workers) vs the train step
#   pose_null     45 s  the pipeline's own cost per CPU core, stand-in network
#   lift          60 s  MotionBERT lifter alone (batched, fp16) and extract-pose with / without it
#   total        465 s  = 7.75 minutes: under 8 after start-up (each step is one
#                       `step LIMIT NAME CMD` block).
#
# A stopped step costs its limit and nothing else: its log's tail goes into the JSON and the next
# step runs. Environment: TMOR_DATA (default shared/data in the checkout, else ../shared/data),
# TMOR_FETCHED (encoded clips; default shared/fetched when present), VENV (a virtualenv to use or
# create with the system's packages; default: python3 itself, installs go to $SITE), PYTHON,
# PIP_ARGS (default --no-index --find-links shared/wheels when that folder exists).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE="${SMOKE:-0}" DRY_RUN="${DRY_RUN:-0}"
OUT_JSON="${1:-${OUT:-.}/gpu_bench.json}"
PYTHON="${PYTHON:-python3}"
SECONDS_PER_CLIP=6  # pose, pose_null and embed: the clips PREPARE encodes
if [ -z "${TMOR_DATA:-}" ]; then
  for d in shared/data ../shared/data; do
    [ -d "$d" ] && TMOR_DATA="$(cd "$d" && pwd)" && break
  done
fi
export TMOR_DATA="${TMOR_DATA:-$PWD/shared/data}" YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
[ -d shared/fetched ] && export TMOR_FETCHED="${TMOR_FETCHED:-$PWD/shared/fetched}"
[ -d shared/wheels ] && PIP_ARGS="${PIP_ARGS:---no-index --find-links shared/wheels}"
PIP_ARGS="${PIP_ARGS:-}"
if [ -n "${VENV:-}" ]; then
  if [ ! -x "$VENV/bin/python" ] && [ "$DRY_RUN" != 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"  # sees the system's torch, not a venv's
  fi
  PY="$VENV/bin/python" SITE=""
else
  PY="$PYTHON" SITE="${SITE:-${TMPDIR:-/tmp}/tmor-gpu-site}"
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"  # tmor from this checkout
if [ "${PREPARE:-0}" = 1 ]; then
  exec "$PY" bench/gpu_support.py prepare --seconds "$SECONDS_PER_CLIP"
fi
WORK="$(mktemp -d)"
mkdir -p "$WORK/bin"
export PATH="$WORK/bin:$PATH"
T0=$(date +%s)
STEPS=()
DEVICE=cuda
if [ "$SMOKE" = 1 ]; then  # on a shared CPU, torch's thread pool on every core spins: one each
  DEVICE=auto
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi

size() {  # size FULL SMOKE: the arguments of this run's size
  if [ "$SMOKE" = 1 ]; then echo "$2"; else echo "$1"; fi
}

step() {  # step LIMIT NAME CMD...: bounded, output in $WORK/NAME.log, figures in $WORK/NAME.json
  local limit=$1 name=$2 t rc=0
  shift 2
  STEPS+=("$name:$limit")
  echo "== $name (limit $limit s, $(( $(date +%s) - T0 )) s in): $*"
  [ "$DRY_RUN" = 1 ] && return 0
  t=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$WORK/$name.log" 2>&1 || rc=$?
  echo "$name $rc $(( $(date +%s) - t ))" >> "$WORK/steps.txt"
  tail -n 4 "$WORK/$name.log"
  [ "$rc" = 0 ] || echo "$name: exit $rc after $(( $(date +%s) - t )) s"
}

# 1. install: only what does not import (no resolver: it would pull opencv-python, which needs
#    libGL, and replace the machine's torch); a torch that imports is kept as it is
echo "== install ($(( $(date +%s) - T0 )) s in)"
if [ "$DRY_RUN" != 1 ]; then
  if ! "$PY" -c "import torch" 2>/dev/null; then
    timeout 300 "$PY" -m pip install -q $PIP_ARGS ${SITE:+--target "$SITE"} \
      torch==2.14.1 torchvision==0.29.1 || echo "install: torch failed"
  fi
  missing="$(timeout 30 "$PY" bench/gpu_support.py missing || true)"
  if [ -n "$missing" ]; then
    echo "installing: $missing"
    # shellcheck disable=SC2086  # a list of requirements
    timeout 45 "$PY" -m pip install -q --no-deps $PIP_ARGS ${SITE:+--target "$SITE"} $missing \
      || echo "install: pip failed"
  fi
  if ! command -v ffmpeg >/dev/null; then  # imageio-ffmpeg's static binary as `ffmpeg`
    exe="$("$PY" -c "import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())" 2>/dev/null || true)"
    [ -n "$exe" ] && ln -sf "$exe" "$WORK/bin/ffmpeg"
  fi
  # 2. preflight: one line per missing thing, then stop before the timed steps
  timeout 30 "$PY" bench/gpu_support.py preflight $([ "$SMOKE" = 1 ] && echo --smoke) || {
    echo "gpu.sh: preflight failed after $(( $(date +%s) - T0 )) s: nothing measured" >&2
    exit 2; }
fi

# 3. pose: pipeline vs batched predict vs forward alone (fp16 on CUDA, batch 128)
step 100 pose "$PY" bench/pose.py --device "$DEVICE" --json "$WORK/pose.json" $(size \
  "--seconds $SECONDS_PER_CLIP --copies 4 --batch-size 128 --decode-workers 8 --repeats 3" \
  "--seconds 0.5 --clips basketball_two_person.mp4 --imgsz 320 --batch-size 8 --repeats 1")
# 4. the T-MOR training step vs a supervised step vs inference (bf16 autocast on CUDA), resume
step 60 train "$PY" bench/train.py --device "$DEVICE" --amp bf16 --resume-check \
  --json "$WORK/train.json" $(size \
  "--batch 256 --frames 64 --steps 10 --repeats 3" \
  "--batch 8 --frames 32 --steps 1 --repeats 1 --base-channels 8")
# 5. embed: pipeline vs forward alone, a ViT-B-32-sized open_clip model (random weights)
step 55 embed "$PY" bench/embed.py --device "$DEVICE" --json "$WORK/embed.json" $(size \
  "--model vitb32 --clips 256 --naive-clips 32 --batch-size 64 --decode-threads 8 --repeats 3
   --seconds $SECONDS_PER_CLIP" \
  "--model tiny --clips 4 --naive-clips 2 --batch-size 4 --seconds 1 --repeats 1")
# 6. the trainer's reader: samples/s per worker and with 8 workers
step 40 reader env OMP_NUM_THREADS=1 "$PY" bench/reader.py --json "$WORK/reader.json" $(size \
  "--samples 2048 --all-workers 8 --runs 3" \
  "--samples 128 --all-workers 2 --batches 2 --runs 1")
# 7. the pose pipeline's own cost: stand-in network, one decode worker, torch on one thread
step 45 pose_null env OMP_NUM_THREADS=1 "$PY" bench/pose.py --device "$DEVICE" --null-model \
  --json "$WORK/pose_null.json" $(size \
  "--seconds $SECONDS_PER_CLIP --copies 2 --batch-size 128 --repeats 3" \
  "--seconds 0.5 --clips basketball_two_person.mp4 --imgsz 320 --batch-size 8 --repeats 1")
# 8. MotionBERT lifting (random-weight lite checkpoint): the lifter alone, batched vs one chunk at
#    a time, fp16 / bf16 vs fp32; extract-pose with and without it
step 60 lift "$PY" bench/lift.py --device "$DEVICE" --json "$WORK/lift.json" $(size \
  "--tracks 64 --frames 300 --clips 4 --seconds $SECONDS_PER_CLIP --imgsz 640 --pose-batch-size 128
   --repeats 2" \
  "--tracks 2 --frames 60 --clips 1 --seconds 0.5 --imgsz 320 --pose-batch-size 8 --repeats 1")

[ "$DRY_RUN" = 1 ] && { rm -rf "$WORK"; echo "dry run: nothing measured"; exit 0; }
echo "logs: $WORK"
"$PY" bench/gpu_support.py summary "$WORK" "$OUT_JSON" "$T0" "${STEPS[@]}"
