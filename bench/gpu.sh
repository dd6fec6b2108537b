#!/usr/bin/env bash
# One script for a lent GPU machine (< 8 minutes): install the project from this checkout, then
# measure pose (pipeline vs ultralytics batched predict vs forward alone; and the pipeline's own
# cost with a stand-in network), embed (pipeline vs forward alone; frames decoded per clip),
# the trainer's reader vs a UNIK training step, and MotionBERT lifting (lifter alone; pose with and
# without it); write one JSON of figures.
#
#   bash bench/gpu.sh [OUT.json]          (default: $OUT/gpu_bench.json, else ./gpu_bench.json)
#
# Environment: TMOR_DATA (the shared data folder; default ./shared/data, then ../shared/data),
# PYTHON (default python3), PIP_ARGS (extra pip arguments, e.g. --find-links /wheels), DRY_RUN=1
# (print the commands, run nothing: checks the script on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_JSON="${1:-${OUT:-.}/gpu_bench.json}"
PYTHON="${PYTHON:-python3}"
PIP_ARGS="${PIP_ARGS:-}"
VENV="${VENV:-${TMPDIR:-/tmp}/tmor-gpu-venv}"
if [ -z "${TMOR_DATA:-}" ]; then
  for d in shared/data ../shared/data; do [ -d "$d" ] && TMOR_DATA="$(cd "$d" && pwd)" && break; done
fi
export TMOR_DATA="${TMOR_DATA:-../shared/data}" YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
WORK="$(mktemp -d)"
T0=$(date +%s)

run() {  # run LIMIT_S NAME CMD...: bounded, output kept in $WORK/NAME.log, never fatal
  local limit=$1 name=$2; shift 2
  echo "== $name ($(( $(date +%s) - T0 )) s in): $*"
  if [ "${DRY_RUN:-0}" = 1 ]; then return 0; fi
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1 || echo "$name: exit $?" | tee -a "$WORK/$name.log"
  tail -n 6 "$WORK/$name.log"
}

# 1. install (torch pinned; skipped when this interpreter already has those versions)
if [ "${DRY_RUN:-0}" != 1 ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
if [ "${DRY_RUN:-0}" = 1 ] || ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (
    torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')))"; then
  run 240 install_torch "$PY" -m pip install -q $PIP_ARGS torch==2.14.1 torchvision==0.29.1
fi
run 90 install_tmor "$PY" -m pip install -q $PIP_ARGS -e ".[dev]"
[ "${DRY_RUN:-0}" = 1 ] || "$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU'"

# 2. pose: pipeline vs batched predict vs forward alone (fp16, batch 128), then the null model
run 120 pose "$PY" bench/pose.py --device cuda --seconds 10 --copies 4 --batch-size 128 \
  --decode-workers 8 --repeats 3 --json "$WORK/pose.json"
run 75 pose_null env OMP_NUM_THREADS=1 "$PY" bench/pose.py --device cuda --null-model \
  --seconds 10 --copies 2 --batch-size 128 --repeats 3 --json "$WORK/pose_null.json"
# 3. embed: pipeline vs forward alone, a ViT-B-32-sized open_clip model (random weights)
run 90 embed "$PY" bench/embed.py --device cuda --model vitb32 --clips 256 --batch-size 64 \
  --decode-threads 8 --seconds 5 --repeats 3 --json "$WORK/embed.json"
# 4. the trainer's reader vs a UNIK training step
run 45 reader "$PY" bench/reader.py --workers 8 --runs 2
run 45 train "$PY" bench/train.py --device cuda --amp bf16 --batch 256 --steps 10 --repeats 3
# 5. MotionBERT lifting (issue 24; random-weight lite checkpoint): the lifter alone, batched vs one
#    chunk at a time, fp16 / bf16 vs fp32; the pose stage with and without it. Merged at the end.
run 75 lift "$PY" bench/lift.py --device cuda --tracks 64 --frames 300 --clips 4 --seconds 3 \
  --imgsz 640 --pose-batch-size 128 --repeats 2 --json "$WORK/lift.json"

[ "${DRY_RUN:-0}" = 1 ] && { echo "dry run: nothing measured"; exit 0; }
"$PY" - "$WORK" "$OUT_JSON" "$T0" <<'EOF'
import json, pathlib, platform, subprocess, sys, time
work, out, t0 = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
import torch
doc = {"host": platform.node(), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
       "cpus": __import__("os").cpu_count(), "seconds": round(time.time() - t0)}
try:
    doc["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                   text=True).stdout.strip()
except OSError:
    pass
for name in ("pose", "pose_null", "embed"):
    f = work / f"{name}.json"
    doc[name] = json.loads(f.read_text()) if f.is_file() else {"error": (
        work / f"{name}.log").read_text()[-2000:] if (work / f"{name}.log").is_file() else "?"}
for name in ("reader", "train"):  # these benches print their figures
    f = work / f"{name}.log"
    doc[name] = f.read_text().strip().splitlines()[-12:] if f.is_file() else []
p, e = doc.get("pose", {}), doc.get("embed", {})
if "pipeline_fps" in p:
    doc["goals"] = {
        "pose_pipeline_over_forward (>= 0.5)": p["pipeline_over_forward"],
        "pose_pipeline_over_predict (>= 25)": p["pipeline_over_naive"],
        "pose_null_model_fps_per_core (>= 500)": doc.get("pose_null", {}).get(
            "null_model_fps_per_core"),
        "pose_null_model_host_fps_per_core": doc.get("pose_null", {}).get(
            "null_model_host_fps_per_core"),
    }
if "pipeline_over_forward" in e:
    doc.setdefault("goals", {})["embed_pipeline_over_forward (>= 0.8)"] = e[
        "pipeline_over_forward"]
    doc["goals"]["embed_frames_decoded_per_clip (<= 16)"] = e["frames_decoded_per_clip"]
out.write_text(json.dumps(doc, indent=1))
print(json.dumps(doc.get("goals", {}), indent=1))
print(f"wrote {out} in {doc['seconds']} s")
EOF
# 5. (issue 24) the lift figures into the same JSON
"$PY" - "$WORK/lift.json" "$OUT_JSON" <<'EOF'
import json, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
doc = json.loads(out.read_text())
doc["lift"] = json.loads(src.read_text()) if src.is_file() else {"error": "no lift.json"}
out.write_text(json.dumps(doc, indent=1))
print(json.dumps({k: doc["lift"].get(k) for k in ("lifter", "pipeline")}, indent=1))
EOF
