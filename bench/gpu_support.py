"""The Python half of ``bench/gpu.sh``: what is missing before the timed steps, the one JSON
after them, and filling ``shared/`` for a machine without network.

    python bench/gpu_support.py missing              # pip requirements of the modules that fail
    python bench/gpu_support.py preflight [--smoke]  # one line per missing thing; exit 2
    python bench/gpu_support.py summary WORK OUT T0 STEP:LIMIT...   # merge the steps' JSON
    python bench/gpu_support.py prepare --seconds 6  # fill shared/ (data, fetched clips, wheels)

Standard library only at import time: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

#: module -> pip requirement (installed with --no-deps) of what the GPU steps import; torch and
#: torchvision are taken as they are (the machine's CUDA build) and never installed here
MODULES = {
    "numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "fsspec": "fsspec",
    "typer": "typer", "rich": "rich", "yaml": "pyyaml", "scipy": "scipy",
    "matplotlib": "matplotlib", "av": "av", "braceexpand": "braceexpand",
    "webdataset": "webdataset", "cv2": "opencv-python-headless",  # headless: no libGL
    "ultralytics": "ultralytics", "thop": "ultralytics-thop",
    "ftfy": "ftfy", "wcwidth": "wcwidth", "open_clip": "open_clip_torch",
}
#: what the GPU image (python 3.12, torch 2.11 cu130, no index; KINDS.md) lacks of the above
GPU_IMAGE_LACKS = ["av", "braceexpand", "webdataset", "ultralytics", "ultralytics-thop", "ftfy",
                   "wcwidth", "open_clip_torch"]
MAX_SHARED_BYTES = 60 * 2**20  # the device tool carries 64 MiB of working tree in all


def data_dir() -> Path:
    """$TMOR_DATA, else shared/data inside the checkout, else ../shared/data beside it."""
    env = os.environ.get("TMOR_DATA")
    if env:
        return Path(env)
    inside = ROOT / "shared" / "data"
    return inside if inside.is_dir() else ROOT.parent / "shared" / "data"


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure (ImportError, a missing libGL...) counts
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"{type(e).__name__}: {first}"
    return None


def missing_requirements() -> list[str]:
    """The pip requirements of the modules that do not import (imageio-ffmpeg when there is no
    ffmpeg on PATH)."""
    reqs = [req for mod, req in MODULES.items() if _import_error(mod)]
    if not shutil.which("ffmpeg") and _import_error("imageio_ffmpeg"):
        reqs.append("imageio-ffmpeg")
    return reqs


def pose_clips() -> list[str]:
    sys.path.insert(0, str(BENCH))
    import pose  # bench/pose.py: its clip list

    return list(pose.CLIPS)


def preflight(smoke: bool) -> list[str]:
    """One line per thing the steps need and do not have."""
    data = data_dir()
    out = []
    if not data.is_dir():
        return [f"data folder: {data} does not exist (set TMOR_DATA, or put the shared data in "
                f"shared/data: PREPARE=1 bash bench/gpu.sh)"]
    weights = data / "models" / "yolo11n-pose.pt"
    if not weights.is_file():
        out.append(f"weights: {weights} is missing (pose, pose_null)")
    for clip in pose_clips():
        if not (data / "videos" / clip).is_file():
            out.append(f"clip: {data / 'videos' / clip} is missing (pose, pose_null)")
    if not any((data / "videos").glob("*.mp4")):
        out.append(f"clips: no .mp4 under {data / 'videos'} (embed)")
    sk = data / "skeletons"
    if not (any(sk.glob("ntu_sample/*.npy")) or any(sk.glob("fallfree/*.csv"))):
        out.append(f"skeletons: no ntu_sample/*.npy or fallfree/*.csv under {sk} (train, reader)")
    fetched = os.environ.get("TMOR_FETCHED")
    if not shutil.which("ffmpeg") and not (fetched and any(Path(fetched).glob("*.mp4"))):
        out.append("ffmpeg: not on PATH, no imageio-ffmpeg binary, no fetched clips "
                   "(TMOR_FETCHED): the pose and embed steps encode their clips with it")
    for mod in ("torch", "torchvision", *MODULES):
        err = _import_error(mod)
        if err:
            out.append(f"python module {mod}: {err}")
    if not smoke and not _import_error("torch"):
        import torch

        if not torch.cuda.is_available():
            out.append(f"GPU: torch {torch.__version__} sees no CUDA device (SMOKE=1 runs every "
                       "step on the CPU)")
    return out


# -- after the steps ------------------------------------------------------------------------------
def summary(work: Path, out: Path, t0: int, steps: list[str]) -> int:
    """Merge each step's JSON into one document (a step without one: its log's tail); returns
    the number of steps without figures."""
    import torch

    cuda = torch.cuda.is_available()
    doc: dict = {"host": platform.node(), "device": torch.cuda.get_device_name(0) if cuda
                 else "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
                 "cpus": os.cpu_count(), "smoke": os.environ.get("SMOKE") == "1",
                 "seconds": round(time.time() - t0), "steps": {}}
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if rev.returncode == 0:
        doc["commit"] = rev.stdout.strip()
    ran = {}
    if (work / "steps.txt").is_file():
        for line in (work / "steps.txt").read_text().splitlines():
            name, rc, secs = line.split()
            ran[name] = {"rc": int(rc), "seconds": int(secs)}
    failed = 0
    for spec in steps:
        name, limit = spec.rsplit(":", 1)
        doc["steps"][name] = {"limit": int(limit), **ran.get(name, {"rc": None})}
        f, log = work / f"{name}.json", work / f"{name}.log"
        if f.is_file():
            doc[name] = json.loads(f.read_text())
        else:
            failed += 1
            doc[name] = {"error": log.read_text()[-2000:] if log.is_file() else "not run"}
    doc["goals"] = goals(doc)
    out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc["goals"], indent=1))
    print(f"wrote {out} in {doc['seconds']} s ({failed} step(s) without figures)")
    return failed


def goals(doc: dict) -> dict:
    """The figures the issue asks for, next to their goals."""
    p, n, e = doc.get("pose", {}), doc.get("pose_null", {}), doc.get("embed", {})
    r, t = doc.get("reader", {}), doc.get("train", {})
    g = {
        "pose_pipeline_over_forward (>= 0.5)": p.get("pipeline_over_forward"),
        "pose_pipeline_over_predict (>= 25)": p.get("pipeline_over_naive"),
        "pose_null_model_fps_per_core (>= 500)": n.get("null_model_fps_per_core"),
        "pose_null_model_host_fps_per_core": n.get("null_model_host_fps_per_core"),
        "embed_pipeline_over_forward (>= 0.8)": e.get("pipeline_over_forward"),
        "embed_frames_decoded_per_clip (<= 16)": e.get("frames_decoded_per_clip"),
        "train_step_samples_per_s": t.get("tmor_step_samples_per_s"),
        "reader_samples_per_s_per_worker": r.get("samples_per_s_per_worker"),
    }
    if g["train_step_samples_per_s"] and g["reader_samples_per_s_per_worker"]:
        g["reader_worker_over_train_step"] = round(
            g["reader_samples_per_s_per_worker"] / g["train_step_samples_per_s"], 3)
    return g


# -- before: shared/ for a machine without network --------------------------------------------
def prepare(source: Path, seconds: list[float], wheels: bool) -> int:
    """Copy what the steps read into ``shared/`` of this checkout (the device tool carries it):
    data (the YOLO weights, clips, skeletons), the clips encoded as fetch leaves them for each
    ``seconds`` (``shared/fetched``: no ffmpeg needed there), and the wheels of the modules the
    GPU image lacks (``shared/wheels``, cp312 manylinux). Returns the bytes written."""
    dst = ROOT / "shared"
    data = dst / "data"
    if source.resolve() != data.resolve():  # a second PREPARE finds it there already
        (data / "models").mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "models" / "yolo11n-pose.pt", data / "models")
        for sub in ("videos", "skeletons"):
            shutil.copytree(source / sub, data / sub, dirs_exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests"))
    from _fetched import cached_name, fetch_encode

    (dst / "fetched").mkdir(exist_ok=True)
    clips = sorted(p for p in (data / "videos").iterdir() if p.suffix in (".mp4", ".avi"))
    for s in seconds:
        for clip in clips:
            out = dst / "fetched" / cached_name(clip, s)
            if not out.is_file():
                fetch_encode(clip, out, s)
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.12", "--implementation",
                        "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                        "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d",
                        str(dst / "wheels"), *GPU_IMAGE_LACKS], check=True)
    total = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"shared/: {total / 2**20:.1f} MiB ({', '.join(sorted(p.name for p in dst.iterdir()))})")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("missing")
    pf = sub.add_parser("preflight")
    pf.add_argument("--smoke", action="store_true", help="no GPU needed")
    sm = sub.add_parser("summary")
    sm.add_argument("work", type=Path)
    sm.add_argument("out", type=Path)
    sm.add_argument("t0", type=int)
    sm.add_argument("steps", nargs="*", help="NAME:LIMIT of each step, in order")
    pr = sub.add_parser("prepare")
    pr.add_argument("--source", type=Path, default=Path(os.environ.get("TMOR_DATA") or
                    ROOT.parent / "shared" / "data"), help="the shared data folder to copy")
    pr.add_argument("--seconds", type=float, nargs="+", default=[6.0])
    pr.add_argument("--no-wheels", action="store_true")
    args = ap.parse_args()
    if args.cmd == "missing":
        print(" ".join(missing_requirements()))
    elif args.cmd == "preflight":
        lines = preflight(args.smoke)
        for line in lines:
            print(f"gpu.sh: missing: {line}", file=sys.stderr)
        sys.exit(2 if lines else 0)
    elif args.cmd == "summary":
        sys.exit(1 if summary(args.work, args.out, args.t0, args.steps) else 0)
    else:
        total = prepare(args.source, args.seconds, not args.no_wheels)
        if total > MAX_SHARED_BYTES:
            sys.exit(f"gpu_support.py: error: shared/ holds {total / 2**20:.1f} MiB, more than "
                     f"the {MAX_SHARED_BYTES / 2**20:.0f} MiB the device tool carries beside "
                     "the checkout")


if __name__ == "__main__":
    main()
