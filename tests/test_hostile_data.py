"""Hostile and careless inputs to every data path (issue 21).

Each case runs the real CLI (the typer apps behind ``tmor-data`` / ``tmor-train``, in process,
or as a subprocess where a real process matters) on malformed input built from the real files of
``../shared/data`` where they exist, and asserts: exit code 2, stderr exactly one line
``tmor-data: error: ...`` (``tmor-train: error: ...``) naming the file, no traceback, no code run
(a ``__reduce__`` payload would create a marker file), and an existing corpus unchanged (the
sha256 of every file under its root) with no staging folder left beside it. Case ids start with
their category: data_lost, code_runs, bad_values, wrong_format, bounds, tracebacks.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, tree_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tmor.cli.data import app as data_app
from tmor.cli.train import app as train_app

DATA = SHARED_DATA
BENCH = DATA / "benchmarks"
PENN = BENCH / "penn_action" / "labels"
MARKER = "MARKER"

pytestmark = pytest.mark.skipif(not PENN.is_dir(), reason=f"real benchmark files not at {BENCH}")


# ---- helpers -----------------------------------------------------------------------------------


def run_cli(app, argv: list[str]):
    return CliRunner().invoke(app, argv)


def assert_one_line(result, prog: str, names: str) -> str:
    """Exit 2, one stderr line ``<prog>: error: ...`` naming ``names``, no traceback."""
    err = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert names in lines[0], (names, err)
    return lines[0]


class Evil:
    """Unpickling this creates ``path`` (code from data)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def penn_arrays(n: int = 3) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(video id, keypoint (1, T, 13, 2), score, action) of real Penn Action files."""
    from tmor.shards.benchmarks.penn_action import read_penn_mat

    out = []
    for p in sorted(PENN.glob("*.mat"))[:n]:
        r = read_penn_mat(str(p))
        out.append((p.stem, r["keypoint"], r["score"], r["action"]))
    return out


def pyskl_data(**top) -> dict:
    """A valid pyskl dict of 3 real Penn Action sequences (layout penn13, 15 class names)."""
    from tmor.shards.benchmarks.penn_action import CLASSES

    anns = [{"frame_dir": vid, "total_frames": kp.shape[1], "label": CLASSES.index(act),
             "img_shape": (480, 640), "original_shape": (480, 640), "keypoint": kp,
             "keypoint_score": sc} for vid, kp, sc, act in penn_arrays()]
    return {"split": {"train": [a["frame_dir"] for a in anns[:2]],
                      "test": [anns[2]["frame_dir"]]},
            "annotations": anns, "label_names": list(CLASSES), **top}


def write_pickle(tmp: Path, obj, name: str = "data.pkl") -> Path:
    path = tmp / name
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def edited_ann(tmp: Path, edit: Callable[[dict], None], name: str = "data.pkl") -> Path:
    data = pyskl_data()
    edit(data["annotations"][1])
    return write_pickle(tmp, data, name)


def penn_copy(tmp: Path, n: int = 2, folder: str = "penn") -> Path:
    out = tmp / folder
    out.mkdir(exist_ok=True)
    for p in sorted(PENN.glob("*.mat"))[:n]:
        shutil.copy(p, out / p.name)
    return out


def penn_variant(tmp: Path, **changes) -> Path:
    """A copy of the first real .mat with fields changed (None removes one) next to a good one."""
    from scipy.io import loadmat, savemat

    folder = penn_copy(tmp, 1)
    src = sorted(PENN.glob("*.mat"))[1]
    m = {k: v for k, v in loadmat(str(src)).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v(m[k]) if callable(v) else v
    savemat(str(folder / src.name), m)
    return folder


def penn_args(folder: Path) -> list[str]:
    return ["import", "--format", "penn_action", str(folder), "--root", "{root}", "--overwrite"]


def tsu_kpts(frames: int = 40) -> np.ndarray:
    """Real LCR-Net 2D joints of a TSU video, (T, 17, 2)."""
    return np.load(BENCH / "tsu" / "P11T13C03_LCRNet2d.npz")["kpts"][:frames]


def lcrnet_json(path: Path, frames: int = 40, edit: Callable[[dict], None] | None = None) -> Path:
    """An LCR-Net JSON of real joints (the first 13 of the released 17, one person a frame)."""
    from tmor.shards.benchmarks.lcrnet import lcrnet_frames

    k = tsu_kpts(frames)[None, :, :13]
    obj = {"K": 5, "njts": 13, "frames": lcrnet_frames(k, np.ones(k.shape[:3], np.float32))}
    if edit:
        edit(obj)
    path.write_text(json.dumps(obj))
    return path


def tsu_case(tmp: Path, edit_ann: Callable[[dict], None] | None = None,
             edit_pose: Callable[[dict], None] | None = None) -> tuple[Path, Path]:
    """(skeleton folder, annotation JSON): the real CS annotation of P11T13C03 and its joints."""
    real = json.loads((BENCH / "tsu" / "smarthome_CS_51.json").read_text())
    ann = {"P11T13C03": real["P11T13C03"]}
    ann["P11T13C03"]["duration"] = 40
    ann["P11T13C03"]["actions"] = [[1, 2, 20], [5, 10, 39]]
    if edit_ann:
        edit_ann(ann)
    (tmp / "tsu").mkdir(exist_ok=True)
    lcrnet_json(tmp / "tsu" / "P11T13C03.json", 40, edit_pose)
    (tmp / "smarthome_CS_51.json").write_text(json.dumps(ann))
    return tmp / "tsu", tmp / "smarthome_CS_51.json"


def tsu_args(folder: Path, ann: Path) -> list[str]:
    return ["import", "--format", "tsu", str(folder), "--annotations", str(ann), "--root",
            "{root}", "--overwrite"]


UAV_NAME = "P070S01G10B00H10UC102000LC092000A031R0_09131758"


def uav_txt(path: Path, frames: int = 4, header: str | None = None,
            joint: Callable[[int, int, np.ndarray], str] | None = None) -> Path:
    """UAV-Human skeleton txt (FORMATS.md section 4) of real 17-joint 2D TSU poses."""
    k = tsu_kpts(frames)
    out = [header or str(frames)]
    for t in range(frames):
        out += ["1", "000 0 0 0 0 0 0 0 0 0", "17"]
        out += [joint(t, j, k[t, j]) if joint else f"{k[t, j, 0]:.3f} {k[t, j, 1]:.3f} 0"
                for j in range(17)]
    path.write_text("\n".join(out) + "\n")
    return path


def uav_args(folder: Path) -> list[str]:
    return ["import", "--format", "uav_human", str(folder), "--root", "{root}", "--overwrite"]


def pku_case(tmp: Path, label: str = "1,10,20,1\n", edit_line: Callable[[str], str] | None = None
             ) -> list[str]:
    """Real A10N08-L.txt (the first 50 frames) with a label file of the same name."""
    (tmp / "sk").mkdir()
    (tmp / "lab").mkdir()
    lines = (BENCH / "pku_mmd" / "A10N08-L.txt").read_text().splitlines()[:50]
    if edit_line:
        lines[3] = edit_line(lines[3])
    (tmp / "sk" / "A10N08-L.txt").write_text("\n".join(lines) + "\n")
    (tmp / "lab" / "A10N08-L.txt").write_text(label)
    return ["import", "--format", "pku_mmd", str(tmp / "sk"), "--annotations", str(tmp / "lab"),
            "--root", "{root}", "--overwrite"]


def charades_case(tmp: Path, edit_ann: Callable[[dict], None] | None = None,
                  pose_bytes: bytes | None = None) -> list[str]:
    """A real charades.json entry and a pose.npz of real Penn joints named by its video id."""
    from tmor.skeleton.npz import encode_pose

    real = json.loads((BENCH / "charades" / "charades.json").read_text())
    vid = next(iter(real))
    ann = {vid: real[vid]}
    if edit_ann:
        edit_ann(ann[vid])
    (tmp / "ann.json").write_text(json.dumps(ann))
    (tmp / "poses").mkdir()
    _, kp, sc, _ = penn_arrays(1)[0]
    data = pose_bytes or encode_pose(kp, sc, "penn13", 30.0)
    (tmp / "poses" / f"{vid}.npz").write_bytes(data)
    return ["import", "--format", "charades", str(tmp / "poses"), "--annotations",
            str(tmp / "ann.json"), "--root", "{root}", "--overwrite"]


def utkinect_case(tmp: Path, labels: str) -> list[str]:
    """UTKinect joints of 20 real NTU joints (3D metres) for frame ids 100..139."""
    a = np.load(DATA / "skeletons" / "ntu_sample" / "ntu60_A005_drop.npy")  # (3, T, 25, 2)
    xyz = a[:, :40, :20, 0].transpose(1, 2, 0).reshape(40, 60)
    rows = np.concatenate([np.arange(100, 140)[:, None], xyz], 1)
    np.savetxt(tmp / "joints_s01_e01.txt", rows, fmt="%.6g")
    (tmp / "actionLabel.txt").write_text(labels)
    return ["import", "--format", "kinect_v1", str(tmp / "joints_s01_e01.txt"), "--annotations",
            str(tmp / "actionLabel.txt"), "--root", "{root}", "--overwrite"]


def npy_variant(tmp: Path, src: str, name: str, edit: Callable[[np.ndarray], None]) -> Path:
    a = np.load(DATA / "skeletons" / src).copy()
    edit(a)
    np.save(tmp / name, a)
    return tmp / name


CHUNK = 1 << 26


@functools.lru_cache(maxsize=4)
def zeros_deflate(nbytes: int, head: bytes = b"", wbits: int = -15) -> bytes:
    """A deflate stream of ``head`` + zeros, ``nbytes`` in all, built in a second: after a full
    flush, identical 64 MiB chunks compress to identical bytes."""
    chunk = bytes(CHUNK)
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = c.compress(head + chunk[: CHUNK - len(head)]) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    n = nbytes // CHUNK - 1
    return first + repeat * n + c.compress(chunk[: nbytes % CHUNK]) + c.flush()


@functools.lru_cache(maxsize=4)
def zeros_crc(nbytes: int, head: bytes) -> int:
    chunk = bytes(CHUNK)
    crc = zlib.crc32(head + chunk[: CHUNK - len(head)])
    for _ in range(nbytes // CHUNK - 1):
        crc = zlib.crc32(chunk, crc)
    return zlib.crc32(chunk[: nbytes % CHUNK], crc)


def bomb_npz(inflated: int, declared: int | None = None) -> bytes:
    """A valid pose.npz whose keypoint member (float32 zeros, (1, T, 17, 2)) inflates to about
    ``inflated`` bytes, its zip headers declaring ``declared`` (default: the truth; less: a
    lying header)."""
    header = io.BytesIO()
    frames = inflated // 136
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1, frames, 17, 2)})
    head = header.getvalue()
    inflated = len(head) + frames * 136
    data, crc = zeros_deflate(inflated, head), zeros_crc(inflated, head)
    usize = inflated if declared is None else declared
    name = b"keypoint.npy"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), usize,
                        len(name), 0) + name
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc,
                          len(data), usize, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    return local + data + central + end


def tar_with(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def triplet_members(pose: bytes) -> dict[str, bytes]:
    from tmor.skeleton.npz import npy_bytes

    return {"k0.pose.npz": pose, "k0.txt": b"", "k0.json": b"{}",
            "k0.text.npy": npy_bytes(np.zeros(0, np.float16))}


# ---- the corpus every case must leave alone ------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base") / "corpus"
    result = run_cli(data_app, ["import", "--format", "penn_action", str(PENN / "0001.mat"),
                                str(PENN / "0002.mat"), str(PENN / "0003.mat"), "--root",
                                str(root), "--samples-per-shard", "2"])
    assert result.exit_code == 0, result.output
    return root


# ---- the cases: (tmp) -> (app, argv with {root}, the name the line must hold) ------------------


def c_another_dataset(tmp):
    uav_txt(tmp / f"{UAV_NAME}.txt")
    return data_app, ["import", "--format", "uav_human", str(tmp), "--root", "{root}"], "{root}"


def c_pyskl_into_corpus(tmp):
    return data_app, ["import", str(write_pickle(tmp, pyskl_data())), "--layout", "penn13",
                      "--root", "{root}"], "already holds a corpus"


def c_uav_on_penn(tmp):
    return data_app, uav_args(penn_copy(tmp)), "penn"


def c_tsu_on_penn(tmp):
    return data_app, tsu_args(penn_copy(tmp), BENCH / "tsu" / "smarthome_CS_51.json"), "penn"


def c_tsu_on_mat_file(tmp):
    f = penn_copy(tmp) / "0001.mat"
    return data_app, tsu_args(f, BENCH / "tsu" / "smarthome_CS_51.json"), "0001.mat"


def c_truncated_second_mat(tmp):
    folder = penn_copy(tmp, 2)
    second = sorted(folder.glob("*.mat"))[1]
    second.write_bytes(second.read_bytes()[:3000])
    return data_app, penn_args(folder), second.name


def c_samples_per_shard_0(tmp):
    return data_app, [*penn_args(penn_copy(tmp)), "--samples-per-shard", "0"], "samples per shard"


def c_pku_no_matching_labels(tmp):
    argv = pku_case(tmp)
    (tmp / "lab" / "A10N08-L.txt").rename(tmp / "lab" / "A01N01-R.txt")
    return data_app, argv, f"{tmp / 'sk'}: no sample to import (dropped: 1 skeleton without"


def c_smarthome_garbage_split_list(tmp):
    (tmp / "sh").mkdir()
    kp = tsu_kpts(20)[None, :, :13]
    from tmor.shards.benchmarks.lcrnet import write_lcrnet

    write_lcrnet(str(tmp / "sh" / "WatchTV_p02_r03_v05_c05.json"), kp,
                 np.ones(kp.shape[:3], np.float32))
    (tmp / "lists").mkdir()
    (tmp / "lists" / "train_CS.txt").write_text("hello world\n%%%%\n")
    return data_app, ["import", "--format", "smarthome", str(tmp / "sh"), "--splits",
                      str(tmp / "lists"), "--root", "{root}", "--overwrite"], "train_CS.txt"


def c_pyskl_reduce(tmp):
    return data_app, ["import", str(edited_ann(tmp, lambda a: a.update(x=Evil(tmp / MARKER)))),
                      "--root", "{root}", "--overwrite"], "data.pkl"


def c_pyskl_reduce_label(tmp):
    return data_app, ["import", str(edited_ann(tmp, lambda a: a.update(label=Evil(tmp / MARKER)))),
                      "--root", "{root}", "--overwrite"], "data.pkl"


def raw_pickle(tmp: Path) -> Path:
    """Protocol-0 bytes calling builtins.open(marker, 'w') (no class needed to build them)."""
    path = tmp / "raw.pkl"
    path.write_bytes(b"cbuiltins\nopen\n(V" + str(tmp / MARKER).encode() + b"\nVw\ntR.")
    return path


def c_raw_global_import(tmp):
    return data_app, ["import", str(raw_pickle(tmp)), "--root", "{root}", "--overwrite"], "raw.pkl"


def train_args(command: str, data: Path, tmp: Path) -> list[str]:
    return [command, "--data", str(data), "--out", str(tmp / "run"), "--epochs", "1", "--device",
            "cpu"]


def c_finetune_reduce(tmp):
    pkl = edited_ann(tmp, lambda a: a.update(x=Evil(tmp / MARKER)))
    return train_app, train_args("finetune", pkl, tmp), "data.pkl"


def c_linear_probe_raw_global(tmp):
    return train_app, train_args("linear-probe", raw_pickle(tmp), tmp), "raw.pkl"


def untrimmed_data() -> dict:
    """The pyskl data as tmor's untrimmed pickle: classes, segments, label -1."""
    data = pyskl_data(classes=["a", "b"])
    del data["label_names"]
    for a in data["annotations"]:
        a["label"], a["segments"] = -1, [(0, 1, 5)]
    return data


def c_detect_reduce(tmp):
    data = untrimmed_data()
    data["annotations"][0]["x"] = Evil(tmp / MARKER)
    return train_app, train_args("detect", write_pickle(tmp, data), tmp), "data.pkl"


def pyskl_import(tmp, edit, name="data.pkl"):
    return data_app, ["import", str(edited_ann(tmp, edit, name)), "--layout", "penn13",
                      "--root", "{root}", "--overwrite"], name


def pyskl_finetune(tmp, edit):
    return train_app, train_args("finetune", edited_ann(tmp, edit), tmp), "data.pkl"


def _set(key, value):
    return lambda a: a.__setitem__(key, value)


def _nan_kp(a):
    a["keypoint"] = a["keypoint"].copy()
    a["keypoint"][0, 3, 2, 1] = np.nan


def _inf_score(a):
    a["keypoint_score"] = a["keypoint_score"].copy()
    a["keypoint_score"][0, 1, 1] = np.inf


def _zero_frames(a):
    a["keypoint"], a["keypoint_score"] = a["keypoint"][:, :0], a["keypoint_score"][:, :0]
    a["total_frames"] = 0


def c_pyskl_duplicate(tmp):
    data = pyskl_data()
    data["annotations"][2]["frame_dir"] = data["annotations"][0]["frame_dir"]
    return data_app, ["import", str(write_pickle(tmp, data)), "--layout", "penn13", "--root",
                      "{root}", "--overwrite"], "duplicate sample name '0001'"


def c_penn_duplicate_names(tmp):
    penn_copy(tmp, 1, "a")
    penn_copy(tmp, 1, "b")
    return data_app, ["import", "--format", "penn_action", str(tmp / "a"), str(tmp / "b"),
                      "--root", "{root}", "--overwrite"], "0001.mat"


def c_tsu_class_99(tmp):
    return data_app, tsu_args(*tsu_case(tmp, lambda a: a["P11T13C03"]["actions"].append(
        [99, 1, 5]))), "smarthome_CS_51.json: P11T13C03"


def c_tsu_nan_joint(tmp):
    def nan(obj):
        obj["frames"][3][0]["pose2d"][4] = float("nan")
    return data_app, tsu_args(*tsu_case(tmp, edit_pose=nan)), "P11T13C03.json"


def c_charades_class_500(tmp):
    return data_app, charades_case(tmp, lambda a: a["actions"].append([500, 1.0, 2.0])), "ann.json"


def c_uav_a999(tmp):
    uav_txt(tmp / f"{UAV_NAME.replace('A031', 'A999')}.txt")
    return data_app, uav_args(tmp), "A999"


def c_uav_inf_joint(tmp):
    uav_txt(tmp / f"{UAV_NAME}.txt", joint=lambda t, j, k: "inf 3 0" if (t, j) == (2, 5)
            else f"{k[0]:.3f} {k[1]:.3f} 0")
    return data_app, uav_args(tmp), UAV_NAME


def c_pku_label_99(tmp):
    return data_app, pku_case(tmp, "99,10,20,1\n"), "A10N08-L.txt"


def c_pku_nan(tmp):
    return data_app, pku_case(tmp, edit_line=lambda ln: "nan " + ln.split(None, 1)[1]), \
        "A10N08-L.txt"


def c_kinect_v1_duplicate(tmp):
    return data_app, utkinect_case(tmp, "s01_e01\nwalk: 100 119\nwalk: 120 139\n"), \
        "joints_s01_e01.txt"


def c_ntu_npy_nan(tmp):
    p = npy_variant(tmp, "ntu_sample/ntu60_A005_drop.npy", "ntu60_A005_drop.npy",
                    lambda a: a.__setitem__((0, 5, 3, 0), np.nan))
    return data_app, ["import", str(p), "--root", "{root}", "--overwrite"], p.name


def c_fsd10_inf(tmp):
    p = npy_variant(tmp, "fsd10_sample/fsd10_class27.npy", "fsd10_class27.npy",
                    lambda a: a.__setitem__((1, 7, 3, 0), np.inf))
    return data_app, ["import", str(p), "--root", "{root}", "--overwrite"], p.name


def c_kinect_csv_nan(tmp):
    src = DATA / "skeletons" / "fallfree" / "Fall-1-19-4_Skeleton.csv"
    lines = src.read_text().splitlines()
    parts = lines[30].split(",")
    parts[2] = "nan"
    lines[30] = ",".join(parts)
    (tmp / src.name).write_text("\n".join(lines) + "\n")
    return data_app, ["import", str(tmp / src.name), "--root", "{root}", "--overwrite"], src.name


def c_penn_nframes_minus_5(tmp):
    return data_app, penn_args(penn_variant(tmp, nframes=np.array([[-5]]))), "0002.mat"


def c_penn_nan_x(tmp):
    def nan(x):
        x = x.astype(np.float64)
        x[2, 3] = np.nan
        return x
    return data_app, penn_args(penn_variant(tmp, x=nan)), "0002.mat"


def c_penn_unknown_action(tmp):
    return data_app, penn_args(penn_variant(tmp, action=np.array(["moonwalk"]))), "0002.mat"


def c_penn_missing_x(tmp):
    return data_app, penn_args(penn_variant(tmp, x=None)), "0002.mat"


def c_penn_garbage_mat(tmp):
    folder = penn_copy(tmp, 1)
    (folder / "0009.mat").write_bytes(os.urandom(4000))
    return data_app, penn_args(folder), "0009.mat"


def c_tsu_json_list(tmp):
    folder, ann = tsu_case(tmp)
    ann.write_text(json.dumps([1, 2, 3]))
    return data_app, tsu_args(folder, ann), ann.name


def c_tsu_unknown_subset(tmp):
    return data_app, tsu_args(*tsu_case(tmp, lambda a: a["P11T13C03"].update(
        subset="validation"))), "P11T13C03"


def c_smarthome_json_list(tmp):
    (tmp / "sh").mkdir()
    (tmp / "sh" / "WatchTV_p02_r03_v05_c05.json").write_text("[]")
    return data_app, ["import", "--format", "smarthome", str(tmp / "sh"), "--root", "{root}",
                      "--overwrite"], "WatchTV_p02_r03_v05_c05.json"


def c_charades_json_list(tmp):
    argv = charades_case(tmp)
    (tmp / "ann.json").write_text("[[1, 2]]")
    return data_app, argv, "ann.json"


def c_pyskl_not_a_dict(tmp):
    return data_app, ["import", str(write_pickle(tmp, 42)), "--root", "{root}", "--overwrite"], \
        "data.pkl"


def c_pyskl_ann_is_list(tmp):
    data = pyskl_data()
    data["annotations"][1] = [1, 2, 3]
    return data_app, ["import", str(write_pickle(tmp, data)), "--root", "{root}",
                      "--overwrite"], "data.pkl"


def c_pku_wrong_width(tmp):
    return data_app, pku_case(tmp, edit_line=lambda ln: ln + " 1.0"), "A10N08-L.txt"


def c_kinect_csv_joint_order(tmp):
    src = DATA / "skeletons" / "fallfree" / "Non-fall-1-70-3_Skeleton.csv"
    lines = src.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (tmp / src.name).write_text("\n".join(lines) + "\n")
    return data_app, ["import", str(tmp / src.name), "--root", "{root}", "--overwrite"], src.name


def c_text_as_npy(tmp):
    (tmp / "ntu60_A001.npy").write_text("not an array\n")
    return data_app, ["import", str(tmp / "ntu60_A001.npy"), "--root", "{root}",
                      "--overwrite"], "ntu60_A001.npy"


def c_kinect_v1_garbage_labels(tmp):
    return data_app, utkinect_case(tmp, "s01_e01\nwalk: soon later\n"), "actionLabel.txt"


def c_pku_garbage_label_line(tmp):
    return data_app, pku_case(tmp, "walk,from,here\n"), "A10N08-L.txt"


def c_uav_frames_1e12(tmp):
    uav_txt(tmp / f"{UAV_NAME}.txt", header=str(10 ** 12))
    return data_app, uav_args(tmp), UAV_NAME


def c_ntu_skeleton_frames_1e12(tmp):
    (tmp / "S001C001P001R001A001.skeleton").write_text(f"{10 ** 12}\n1\n" + "0 " * 10 + "\n")
    return data_app, ["import", str(tmp / "S001C001P001R001A001.skeleton"), "--root", "{root}",
                      "--overwrite"], "S001C001P001R001A001.skeleton"


def c_npy_header_huge(tmp):
    p = tmp / "ntu60_A002.npy"
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": True, "shape": (3, 10 ** 9, 25, 2)})
    p.write_bytes(head.getvalue() + bytes(4096))
    return data_app, ["import", str(p), "--root", "{root}", "--overwrite"], p.name


def c_pyskl_array_of_a_size(tmp):
    """numpy.ndarray((1, 10**8, 17, 2)) from 60 bytes: 13.6 GB once touched."""
    (tmp / "big.pkl").write_bytes(b"cnumpy\nndarray\n((I1\nI100000000\nI17\nI2\nttR.")
    return data_app, ["import", str(tmp / "big.pkl"), "--root", "{root}", "--overwrite"], \
        "big.pkl"


def c_pyskl_bytearray_of_a_size(tmp):
    (tmp / "big.pkl").write_bytes(b"c__builtin__\nbytearray\n(I10000000000\ntR.")
    return data_app, ["import", str(tmp / "big.pkl"), "--root", "{root}", "--overwrite"], \
        "big.pkl"


def c_uav_sparse_2gib(tmp):
    p = tmp / f"{UAV_NAME}.txt"
    with open(p, "wb") as f:
        f.truncate(2 << 30)  # sparse: no disk, no time
    return data_app, uav_args(tmp), UAV_NAME


def c_charades_npz_bomb(tmp):
    return data_app, charades_case(tmp, pose_bytes=bomb_npz(3_400_000_000)), ".npz"


def c_penn_mat_bomb(tmp):
    folder = penn_copy(tmp, 1)
    body = zeros_deflate(1_100_000_000 + 64, wbits=15)
    mat = (b"MATLAB 5.0 MAT-file, hostile".ljust(116) + bytes(8) + b"\x00\x01IM"
           + struct.pack("<II", 15, len(body)) + body)
    (folder / "0007.mat").write_bytes(mat)
    return data_app, penn_args(folder), "0007.mat"


def c_empty_mat(tmp):
    folder = penn_copy(tmp, 1)
    (folder / "0005.mat").write_bytes(b"")
    return data_app, penn_args(folder), "0005.mat"


def c_empty_pkl(tmp):
    (tmp / "empty.pkl").write_bytes(b"")
    return data_app, ["import", str(tmp / "empty.pkl"), "--root", "{root}", "--overwrite"], \
        "empty.pkl"


def c_truncated_pkl(tmp):
    b = pickle.dumps(pyskl_data())
    (tmp / "cut.pkl").write_bytes(b[: len(b) // 2])
    return data_app, ["import", str(tmp / "cut.pkl"), "--root", "{root}", "--overwrite"], \
        "cut.pkl"


def c_finetune_empty_pkl(tmp):
    (tmp / "empty.pkl").write_bytes(b"")
    return train_app, train_args("finetune", tmp / "empty.pkl", tmp), "empty.pkl"


def c_finetune_truncated_pkl(tmp):
    b = pickle.dumps(pyskl_data())
    (tmp / "cut.pkl").write_bytes(b[: len(b) - 7])
    return train_app, train_args("finetune", tmp / "cut.pkl", tmp), "cut.pkl"


def c_empty_lcrnet(tmp):
    (tmp / "sh").mkdir()
    (tmp / "sh" / "WatchTV_p02_r03_v05_c05.json").write_bytes(b"")
    return data_app, ["import", "--format", "smarthome", str(tmp / "sh"), "--root", "{root}",
                      "--overwrite"], "WatchTV_p02_r03_v05_c05.json"


def c_empty_uav(tmp):
    (tmp / f"{UAV_NAME}.txt").write_bytes(b"")
    return data_app, uav_args(tmp), UAV_NAME


def c_binary_uav(tmp):
    (tmp / f"{UAV_NAME}.txt").write_bytes(b"\xff\xfe\x00" * 100)
    return data_app, uav_args(tmp), UAV_NAME


def c_ntu_negative_frames(tmp):
    (tmp / "S001C001P001R001A003.skeleton").write_text("-5\n")
    return data_app, ["import", str(tmp / "S001C001P001R001A003.skeleton"), "--root", "{root}",
                      "--overwrite"], "S001C001P001R001A003.skeleton"


def c_ntu_negative_joints(tmp):
    (tmp / "S001C001P001R001A004.skeleton").write_text("1\n1\n" + "0 " * 10 + "\n-5\n")
    return data_app, ["import", str(tmp / "S001C001P001R001A004.skeleton"), "--root", "{root}",
                      "--overwrite"], "S001C001P001R001A004.skeleton"


def c_empty_npy(tmp):
    (tmp / "fsd10_class1.npy").write_bytes(b"")
    return data_app, ["import", str(tmp / "fsd10_class1.npy"), "--root", "{root}",
                      "--overwrite"], "fsd10_class1.npy"


def c_empty_csv(tmp):
    (tmp / "Fall-9_Skeleton.csv").write_bytes(b"")
    return data_app, ["import", str(tmp / "Fall-9_Skeleton.csv"), "--root", "{root}",
                      "--overwrite"], "Fall-9_Skeleton.csv"


def c_detect_segment_class_out_of_range(tmp):
    data = untrimmed_data()
    data["annotations"][1]["segments"] = [(7, 1, 5)]
    return train_app, train_args("detect", write_pickle(tmp, data), tmp), "data.pkl"


CASES = [
    pytest.param(c_another_dataset, id="data_lost:another-dataset-without-overwrite"),
    pytest.param(c_pyskl_into_corpus, id="data_lost:pyskl-without-overwrite"),
    pytest.param(c_uav_on_penn, id="data_lost:format-uav_human-on-penn-files"),
    pytest.param(c_tsu_on_penn, id="data_lost:format-tsu-on-penn-folder"),
    pytest.param(c_tsu_on_mat_file, id="data_lost:format-tsu-on-a-mat-file"),
    pytest.param(c_truncated_second_mat, id="data_lost:truncated-second-mat"),
    pytest.param(c_samples_per_shard_0, id="data_lost:samples-per-shard-0"),
    pytest.param(c_pku_no_matching_labels, id="data_lost:pku_mmd-no-matching-label-file"),
    pytest.param(c_smarthome_garbage_split_list, id="data_lost:smarthome-garbage-split-list"),
    pytest.param(c_pyskl_reduce, id="code_runs:pyskl-reduce-import"),
    pytest.param(c_pyskl_reduce_label, id="code_runs:pyskl-reduce-as-label-import"),
    pytest.param(c_raw_global_import, id="code_runs:pyskl-raw-builtins-open-import"),
    pytest.param(c_finetune_reduce, id="code_runs:pyskl-reduce-finetune"),
    pytest.param(c_linear_probe_raw_global, id="code_runs:raw-builtins-open-linear-probe"),
    pytest.param(c_detect_reduce, id="code_runs:pyskl-reduce-detect"),
    pytest.param(lambda t: pyskl_import(t, _set("label", -1)), id="bad_values:pyskl-label-minus-1"),
    pytest.param(lambda t: pyskl_import(t, _set("label", 15)),
                 id="bad_values:pyskl-label-15-of-15"),
    pytest.param(lambda t: pyskl_finetune(t, _set("label", -1)),
                 id="bad_values:finetune-label-minus-1"),
    pytest.param(lambda t: pyskl_import(t, _set("label", 2.5)), id="bad_values:pyskl-label-2.5"),
    pytest.param(lambda t: pyskl_import(t, _nan_kp), id="bad_values:pyskl-nan-keypoint"),
    pytest.param(lambda t: pyskl_finetune(t, _nan_kp), id="bad_values:finetune-nan-keypoint"),
    pytest.param(lambda t: pyskl_import(t, _inf_score), id="bad_values:pyskl-inf-score"),
    pytest.param(lambda t: pyskl_import(t, lambda a: a.update(
        keypoint_score=a["keypoint_score"][:, :-1])), id="bad_values:pyskl-score-shape"),
    pytest.param(lambda t: pyskl_import(t, _zero_frames), id="bad_values:pyskl-zero-frames"),
    pytest.param(lambda t: pyskl_import(t, _set("total_frames", 7)),
                 id="bad_values:pyskl-total-frames-mismatch"),
    pytest.param(c_pyskl_duplicate, id="bad_values:pyskl-duplicate-frame_dir"),
    pytest.param(c_penn_duplicate_names, id="bad_values:penn-duplicate-sample-names"),
    pytest.param(c_penn_nframes_minus_5, id="bad_values:penn-nframes-minus-5"),
    pytest.param(c_penn_nan_x, id="bad_values:penn-nan-x"),
    pytest.param(c_penn_unknown_action, id="bad_values:penn-unknown-action"),
    pytest.param(c_tsu_class_99, id="bad_values:tsu-class-99"),
    pytest.param(c_tsu_nan_joint, id="bad_values:tsu-nan-joint"),
    pytest.param(c_charades_class_500, id="bad_values:charades-class-500"),
    pytest.param(c_uav_a999, id="bad_values:uav-A999"),
    pytest.param(c_uav_inf_joint, id="bad_values:uav-inf-joint"),
    pytest.param(c_pku_label_99, id="bad_values:pku_mmd-label-99"),
    pytest.param(c_pku_nan, id="bad_values:pku_mmd-nan-coordinate"),
    pytest.param(c_kinect_v1_duplicate, id="bad_values:kinect_v1-duplicate-action"),
    pytest.param(c_ntu_npy_nan, id="bad_values:ntu-npy-nan"),
    pytest.param(c_fsd10_inf, id="bad_values:fsd10-inf"),
    pytest.param(c_kinect_csv_nan, id="bad_values:kinect-csv-nan"),
    pytest.param(c_detect_segment_class_out_of_range, id="bad_values:detect-segment-class-7-of-2"),
    pytest.param(lambda t: pyskl_import(t, _set("keypoint", np.array(["a", "b"]))),
                 id="wrong_format:pyskl-keypoint-strings"),
    pytest.param(lambda t: pyskl_import(t, lambda a: a.pop("keypoint")),
                 id="wrong_format:pyskl-no-keypoint"),
    pytest.param(c_pyskl_not_a_dict, id="wrong_format:pyskl-an-int"),
    pytest.param(c_pyskl_ann_is_list, id="wrong_format:pyskl-annotation-a-list"),
    pytest.param(c_penn_missing_x, id="wrong_format:penn-mat-without-x"),
    pytest.param(c_penn_garbage_mat, id="wrong_format:penn-random-bytes"),
    pytest.param(c_tsu_json_list, id="wrong_format:tsu-annotation-json-list"),
    pytest.param(c_tsu_unknown_subset, id="wrong_format:tsu-subset-validation"),
    pytest.param(c_smarthome_json_list, id="wrong_format:smarthome-lcrnet-json-list"),
    pytest.param(c_charades_json_list, id="wrong_format:charades-json-list"),
    pytest.param(c_pku_wrong_width, id="wrong_format:pku_mmd-151-values-a-row"),
    pytest.param(c_kinect_csv_joint_order, id="wrong_format:kinect-csv-joint-order"),
    pytest.param(c_text_as_npy, id="wrong_format:text-as-npy"),
    pytest.param(c_kinect_v1_garbage_labels, id="wrong_format:kinect_v1-label-words"),
    pytest.param(c_pku_garbage_label_line, id="wrong_format:pku_mmd-label-words"),
    pytest.param(c_uav_frames_1e12, id="bounds:uav-frame-count-1e12"),
    pytest.param(c_ntu_skeleton_frames_1e12, id="bounds:ntu-skeleton-frame-count-1e12"),
    pytest.param(c_npy_header_huge, id="bounds:npy-header-declares-600GB"),
    pytest.param(c_uav_sparse_2gib, id="bounds:uav-txt-of-2GiB"),
    pytest.param(c_pyskl_array_of_a_size, id="bounds:pickle-ndarray-of-13.6GB"),
    pytest.param(c_pyskl_bytearray_of_a_size, id="bounds:pickle-bytearray-of-10GB"),
    pytest.param(c_charades_npz_bomb, id="bounds:charades-pose-npz-inflating-to-3.4GB"),
    pytest.param(c_penn_mat_bomb, id="bounds:penn-mat-inflating-to-1.1GB"),
    pytest.param(c_empty_mat, id="tracebacks:empty-mat"),
    pytest.param(c_empty_pkl, id="tracebacks:empty-pkl"),
    pytest.param(c_truncated_pkl, id="tracebacks:truncated-pkl"),
    pytest.param(c_finetune_empty_pkl, id="tracebacks:finetune-empty-pkl"),
    pytest.param(c_finetune_truncated_pkl, id="tracebacks:finetune-truncated-pkl"),
    pytest.param(c_empty_lcrnet, id="tracebacks:empty-lcrnet-json"),
    pytest.param(c_empty_uav, id="tracebacks:empty-uav-txt"),
    pytest.param(c_binary_uav, id="tracebacks:binary-uav-txt"),
    pytest.param(c_ntu_negative_frames, id="tracebacks:ntu-negative-frame-count"),
    pytest.param(c_ntu_negative_joints, id="tracebacks:ntu-negative-joint-count"),
    pytest.param(c_empty_npy, id="tracebacks:empty-npy"),
    pytest.param(c_empty_csv, id="tracebacks:empty-kinect-csv"),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_ends_in_one_line_and_leaves_the_corpus(case, base, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(base, root)
    before = tree_state(root)
    app, argv, names = case(tmp_path)
    argv = [a.replace("{root}", str(root)) for a in argv]
    result = run_cli(app, argv)
    prog = "tmor-data" if app is data_app else "tmor-train"
    print(assert_one_line(result, prog, names.replace("{root}", str(root))))
    assert tree_state(root) == before
    assert not (tmp_path / "run").exists()  # a training command stopped before any output
    assert not [p for p in tmp_path.iterdir() if ".import-" in p.name]  # no staging left
    assert not (tmp_path / MARKER).exists()


# ---- generated malformed files -----------------------------------------------------------------


def hypothesis_settings(examples: int) -> settings:
    """Few examples, the same ones every run (a fast, reproducible suite)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run_import(tmp: Path, base: Path, argv: list[str], names: str,
                must_refuse: bool = False) -> None:
    """Import into a copy of ``base``: exit 0 (unless ``must_refuse``), or exit 2 with one line
    naming ``names`` and the corpus unchanged; never an escaped exception."""
    root = tmp / "corpus"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root)
    before = tree_state(root)
    result = run_cli(data_app, [a.replace("{root}", str(root)) for a in argv])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    print(f"generated: exit {result.exit_code}")
    if result.exit_code == 0:
        assert not must_refuse, "an invalid value was accepted"
        return
    assert_one_line(result, "tmor-data", names)
    assert tree_state(root) == before


@hypothesis_settings(15)
@given(cut=st.floats(0.0, 0.999), flips=st.lists(st.tuples(st.floats(0, 0.999),
                                                            st.integers(0, 255)), max_size=4))
def test_truncated_or_corrupted_mat(cut, flips, base, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mat")
    folder = penn_copy(tmp, 2)
    target = sorted(folder.glob("*.mat"))[1]
    data = bytearray(target.read_bytes())
    for where, value in flips:
        data[int(where * len(data))] = value
    if not flips:
        data = data[: int(cut * len(data))]
    target.write_bytes(bytes(data))
    _run_import(tmp, base, penn_args(folder), target.name)


HOSTILE_VALUES = st.sampled_from([
    None, -1, 10 ** 12, -(10 ** 12), float("nan"), float("inf"), "x", b"\x00", [], [[1, 2]], {},
    {"a": 1}, (1, 2, 3), np.zeros((0,)), np.zeros((1, 2, 13, 2), np.float32),
    np.full((1, 3, 13, 2), np.nan, np.float32), np.array(["s"]), np.zeros((2, 2), np.int64),
    np.float32(np.nan), np.int64(-7), 1 + 2j,
])


@hypothesis_settings(60)
@given(field=st.sampled_from(["frame_dir", "keypoint", "keypoint_score", "label", "label_name",
                              "total_frames", "segments", "img_shape", "fps", "layout"]),
       value=HOSTILE_VALUES)
def test_generated_pyskl_annotations(field, value, base, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkl")
    pkl = edited_ann(tmp, _set(field, value))
    # no hostile value is a valid keypoint, score or frame count (an absent score or count is)
    must_refuse = field == "keypoint" or (field in ("keypoint_score", "total_frames")
                                          and value is not None)
    _run_import(tmp, base, ["import", str(pkl), "--layout", "penn13", "--root", "{root}",
                            "--overwrite"], "data.pkl", must_refuse)


@hypothesis_settings(30)
@given(text=st.text(st.sampled_from("0123456789 .-e\nnaif"), max_size=200))
def test_generated_uav_text(text, base, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uav")
    (tmp / f"{UAV_NAME}.txt").write_text(text)
    _run_import(tmp, base, uav_args(tmp), UAV_NAME)


# ---- commands that read a corpus: validate, show, export ----------------------------------------


def bomb_corpus(tmp: Path, pose: bytes) -> Path:
    root = tmp / "bombed"
    tar_with(root / "triplets" / "000000.tar", triplet_members(pose))
    return root


@pytest.mark.parametrize("declared", [None, 4096], ids=["bounds:validate-npz-3.4GB-honest",
                                                         "bounds:validate-npz-3.4GB-lying"])
def test_validate_on_a_pose_npz_bomb_is_a_defect_in_bounded_memory(declared, tmp_path):
    """The real command in a subprocess; its peak RSS measured by the parent of the process."""
    root = bomb_corpus(tmp_path, bomb_npz(3_400_000_000, declared))
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], "
             "capture_output=True, text=True); print(p.returncode); print(p.stdout.strip()); "
             "print(p.stderr.strip()); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-c",
                           "from tmor.cli.data import main; main()", "validate", "--root",
                           str(root)], capture_output=True, text=True, timeout=300)
    rc, *rest = done.stdout.strip().splitlines()
    peak_kib = int(rest[-1])
    text = "\n".join(rest[:-1])
    print(f"validate on a pose.npz inflating to 3.4 GB (declared {declared}): peak RSS "
          f"{peak_kib / 1024:.0f} MiB")
    assert rc == "1" and "Traceback" not in text
    defects = [ln for ln in text.splitlines() if ln.startswith("DEFECT")]
    assert len(defects) == 1 and "000000.tar: k0: pose.npz unreadable" in defects[0], text
    assert "1 shards, 1 samples: 1 defect(s)" in text
    assert peak_kib < 1.5 * 1024 * 1024, peak_kib


@pytest.mark.parametrize("command", [
    pytest.param(["export", "--to", "pyskl", "--out", "x.pkl"], id="bounds:export-pyskl-npz-bomb"),
    pytest.param(["export", "--to", "stgcn", "--out", "x.npy"], id="bounds:export-stgcn-npz-bomb"),
    pytest.param(["show", "k0", "--out", "s.png"], id="bounds:show-npz-bomb-lying-header"),
])
def test_export_and_show_on_a_pose_npz_bomb_end_in_one_line(command, tmp_path):
    from tmor.skeleton.npz import npy_bytes

    root = bomb_corpus(tmp_path, bomb_npz(3_400_000_000))
    tar_with(root / "pose" / "000000.tar", {"k0.pose.npz": bomb_npz(3_400_000_000, 4096)})
    tar_with(root / "fetch" / "000000.tar", {"k0.mp4": npy_bytes(np.zeros(3))})
    before = tree_state(root)
    out = tmp_path / command[-1]
    result = run_cli(data_app, [*command[:-1], str(out), "--root", str(root)])
    print(assert_one_line(result, "tmor-data", "000000.tar" if command[0] == "export"
                          else f"{root}/pose: k0"))
    assert not out.exists() and tree_state(root) == before


# ---- model files ---------------------------------------------------------------------------------


YOLO = DATA / "models" / "yolo11n-pose.pt"


def evil_pt(tmp: Path, name: str, payload) -> Path:
    import torch

    path = tmp / name
    torch.save(payload, path)
    return path


class GetattrChain:
    """``getattr(Conv2d, '__init__')``: the start of a chain to any global, from allowed names."""

    def __reduce__(self):
        import torch

        return (getattr, (torch.nn.Conv2d, "__init__"))


def test_the_real_yolo_checkpoint_passes_the_scan():
    from tmor.pipeline.pose.yolo_checkpoint import check_yolo_checkpoint

    if not YOLO.is_file():
        pytest.skip(f"{YOLO} missing")
    check_yolo_checkpoint(str(YOLO))


@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> Path:
    """A corpus with one fetched second of a real clip (what extract-pose reads)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg missing")
    tmp = tmp_path_factory.mktemp("fetched")
    (tmp / "src").mkdir()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(DATA / "videos" / "ucf101_archery.avi"),
                    "-t", "1", "-map", "0:v:0", "-c", "copy", str(tmp / "src" / "a.avi")],
                   check=True)
    done = subprocess.run([sys.executable, "-c", "from tmor.cli.data import main; main()",
                           "fetch", str(tmp / "src"), "--root", str(tmp / "root"),
                           "--allow-local", str(tmp / "src"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return tmp / "root"


@pytest.mark.parametrize("payload, names", [
    pytest.param(lambda m: {"model": Evil(m), "date": "2024"}, "io.open",
                 id="code_runs:yolo-pt-reduce-extract-pose"),
    pytest.param(lambda m: {"model": GetattrChain()}, "getattr",
                 id="code_runs:yolo-pt-getattr-chain-extract-pose"),
])
def test_a_pose_model_that_carries_code_is_refused_before_ultralytics(payload, names, fetched,
                                                                        tmp_path):
    pt = evil_pt(tmp_path, "evil.pt", payload(tmp_path / MARKER))
    before = tree_state(fetched)
    done = subprocess.run([sys.executable, "-c", "from tmor.cli.data import main; main()",
                           "extract-pose", "--root", str(fetched), "--model", str(pt),
                           "--device", "cpu", "--no-progress"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("tmor-data: error: ") and "evil.pt" in lines[0] \
        and names in lines[0], lines
    assert not (tmp_path / MARKER).exists()
    # every file as it was; the runner's claim made the empty folders pose/ and pose/_claims
    files = {k: v for k, v in tree_state(fetched).items() if v != "folder"}
    assert files == {k: v for k, v in before.items() if v != "folder"}


# ---- what succeeds -----------------------------------------------------------------------------


def test_overwrite_replaces_the_corpus_whole_and_keeps_other_stages(base, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(base, root)
    (root / "fetch").mkdir()
    (root / "fetch" / "000000.tar").write_bytes(b"kept")
    card = json.loads((root / "corpus.json").read_text())
    card["fetch"] = {"config": {"fps": 30}}
    (root / "corpus.json").write_text(json.dumps(card))
    result = run_cli(data_app, ["import", str(write_pickle(tmp_path, pyskl_data())), "--layout",
                                "penn13", "--root", str(root), "--overwrite"])
    assert result.exit_code == 0, result.output
    card = json.loads((root / "corpus.json").read_text())
    assert card["fetch"] == {"config": {"fps": 30}} and card["import"]["source"].endswith(
        "data.pkl") and card["import"]["samples"] == 3
    assert sorted(p.name for p in (root / "triplets").iterdir()) == ["000000.tar", "index.parquet"]
    assert (root / "fetch" / "000000.tar").read_bytes() == b"kept"
    assert not [p for p in tmp_path.iterdir() if ".import-" in p.name]


def test_export_import_round_trip_of_unlabeled_samples_is_accepted(tmp_path):
    """tmor's own pyskl export (unlabeled samples: label None) passes the door it guards."""
    from tmor.shards.importers import import_files

    root = tmp_path / "a"
    import_files([str(DATA / "skeletons" / "fallfree" / "Fall-1-19-4_Skeleton.csv")], str(root))
    run = run_cli(data_app, ["export", "--root", str(root), "--out", str(tmp_path / "x.pkl")])
    assert run.exit_code == 0, run.output
    run = run_cli(data_app, ["import", str(tmp_path / "x.pkl"), "--layout", "ntu25", "--root",
                             str(tmp_path / "b")])
    assert run.exit_code == 0, run.output
