"""Draw extracted skeletons and track ids over a clip's frames (``tmor-data show``).

:func:`find_clip` finds a key's mp4 in ``<root>/fetch/*.tar`` and its pose in ``<root>/pose/*.tar``;
:func:`render` writes an mp4 (every pose frame) or a contact sheet image (``.png`` / ``.jpg``).
A pose with ``keypoint_3d`` gets a square panel beside each frame: every track's 3D skeleton,
centred on its own joints' mean, side by side, seen orthographically from 30 degrees to the side
(:class:`Panel3D`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tmor.skeleton import layouts as L

#: one colour per kept track (RGB)
COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
          (70, 240, 240), (240, 50, 230), (210, 245, 60)]  # fmt: skip


def draw_pose(
    frame: np.ndarray,
    keypoint: np.ndarray,
    score: np.ndarray,
    track_id: np.ndarray,
    box: np.ndarray | None,
    layout: str = "coco17",
    min_score: float = 0.3,
    scale: float = 1.0,
) -> np.ndarray:
    """Draw people (M, V, 2) with scores (M, V) on a copy of an RGB frame, coordinates x scale."""
    import cv2

    img = np.ascontiguousarray(frame.copy())
    thick = max(1, int(round(min(img.shape[:2]) / 160)))
    bones = L.bones(layout)
    for m in range(keypoint.shape[0]):
        if not (score[m] > 0).any():
            continue
        color = COLORS[int(track_id[m]) % len(COLORS)]
        pts = keypoint[m] * scale
        ok = score[m] >= min_score
        for a, b in bones:
            if ok[a] and ok[b]:
                pa = (int(pts[a, 0]), int(pts[a, 1]))
                pb = (int(pts[b, 0]), int(pts[b, 1]))
                cv2.line(img, pa, pb, color, thick, cv2.LINE_AA)
        for v in np.flatnonzero(ok):
            cv2.circle(img, (int(pts[v, 0]), int(pts[v, 1])), thick + 1, (255, 255, 255), -1,
                       cv2.LINE_AA)
        if box is not None and np.abs(box[m]).sum() > 0:
            x0, y0 = int(box[m, 0] * scale), int(box[m, 1] * scale)
            x1, y1 = int(box[m, 2] * scale), int(box[m, 3] * scale)
            cv2.rectangle(img, (x0, y0), (x1, y1), color, max(1, thick // 2))
            cv2.putText(img, f"id {int(track_id[m])}", (x0 + 2, max(12, y0 + 14)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * max(1, thick), color, max(1, thick // 2),
                        cv2.LINE_AA)
    return img


class Panel3D:
    """The 3D side panel of a pose: one fixed scale over the clip, so skeletons do not jitter."""

    def __init__(self, pose: dict[str, Any], size: int, yaw_deg: float = 30.0):
        k3 = np.asarray(pose["keypoint_3d"], np.float64)  # (M, T, V, 3): x right, y down, z
        self.layout = str(pose.get("layout_3d", pose.get("layout", "coco17")))
        self.track_id, self.size = np.asarray(pose["track_id"]), size
        self.present = np.abs(k3).sum(axis=(-1, -2)) > 0  # (M, T)
        a = np.deg2rad(yaw_deg)
        uv = np.stack([k3[..., 0] * np.cos(a) + k3[..., 2] * np.sin(a), k3[..., 1]], -1)
        self.uv = uv - uv.mean(axis=-2, keepdims=True)  # each skeleton about its own centre
        m = max(1, k3.shape[0])
        seen = self.uv[self.present]
        extent = float(np.abs(seen).max()) if seen.size else 1.0
        self.slot = size / m
        self.scale = 0.45 * min(self.slot, size) / max(extent, 1e-6)

    def draw(self, t: int) -> np.ndarray:
        """(size, size, 3) RGB panel of frame t."""
        import cv2

        img = np.full((self.size, self.size, 3), 255, np.uint8)
        thick = max(1, int(round(self.size / 160)))
        for m in range(self.uv.shape[0]):
            if not self.present[m, t]:
                continue
            centre = np.array([(m + 0.5) * self.slot, self.size / 2])
            pts = (self.uv[m, t] * self.scale + centre).astype(int)
            color = COLORS[int(self.track_id[m]) % len(COLORS)]
            for a, b in L.bones(self.layout):
                cv2.line(img, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, thick,
                         cv2.LINE_AA)
        return img


def find_clip(root: str, key: str) -> tuple[bytes, bytes]:
    """(mp4 bytes, pose.npz bytes) of ``key`` from the fetch and pose shards under ``root``."""
    from tmor import fsio
    from tmor.shards.tario import read_tar_samples

    pose_dir = fsio.join(root, "pose")
    for name in fsio.listdir(pose_dir):
        if not name.endswith(".tar"):
            continue
        samples = read_tar_samples(fsio.join(pose_dir, name))
        if key in samples and "pose.npz" in samples[key]:
            fetch_tar = fsio.join(root, "fetch", name)  # same shard index as the plan
            fetched = read_tar_samples(fetch_tar) if fsio.exists(fetch_tar) else {}
            if "mp4" not in fetched.get(key, {}):
                raise FileNotFoundError(f"{key}: pose found in pose/{name} but no mp4 in "
                                        f"fetch/{name}")
            return fetched[key]["mp4"], samples[key]["pose.npz"]
    raise FileNotFoundError(f"key {key!r} not found in {pose_dir}/*.tar")


def load_clip(root: str, key: str) -> tuple[bytes, dict[str, Any]]:
    """(mp4 bytes, decoded pose) of ``key`` (:func:`find_clip`); the pose.npz is decoded under
    the reader's bounds, and a malformed one is one error naming the key."""
    from tmor.shards.checks import naming
    from tmor.skeleton.npz import decode_pose

    mp4, npz = find_clip(root, key)
    with naming(f"{root}/pose", key):
        return mp4, decode_pose(npz)


def _sheet_indices(n: int, count: int) -> list[int]:
    if n <= count:
        return list(range(n))
    return [int(round(i)) for i in np.linspace(0, n - 1, count)]


def render(
    mp4: bytes | str,
    pose: dict[str, Any],
    out: str | Path,
    tiles: int = 8,
    cols: int = 4,
    tile_width: int = 320,
) -> Path:
    """Draw ``pose`` (a :func:`~tmor.skeleton.npz.decode_pose` dict) over the clip.

    ``out`` ending in .png / .jpg: a contact sheet of ``tiles`` frames spread over the clip;
    otherwise an mp4 of every pose frame at the pose fps.
    """
    from tmor.pipeline import video

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame_index = np.asarray(pose["frame_index"])
    if len(frame_index) == 0:
        raise ValueError("the pose has no frames")
    layout = str(pose.get("layout", "coco17"))
    kp, sc = pose["keypoint"], pose["keypoint_score"]
    tid, box = pose["track_id"], pose.get("box")
    h, w = (int(v) for v in pose["img_shape"])
    sheet = out.suffix.lower() in (".png", ".jpg", ".jpeg")
    pick = _sheet_indices(len(frame_index), tiles) if sheet else list(range(len(frame_index)))
    scale = min(1.0, tile_width / w) if sheet else 1.0
    size = (max(2, int(round(w * scale)) // 2 * 2), max(2, int(round(h * scale)) // 2 * 2))
    frames = video.read_frames(mp4, [int(frame_index[t]) for t in pick], size=size)
    drawn = [
        draw_pose(f, kp[:, t], sc[:, t], tid, None if box is None else box[:, t], layout,
                  scale=size[0] / w)
        for f, t in zip(frames, pick, strict=True)
    ]
    if pose.get("keypoint_3d") is not None:
        panel = Panel3D(pose, size[1])
        drawn = [np.concatenate([img, panel.draw(t)], axis=1)
                 for img, t in zip(drawn, pick, strict=True)]
    if sheet:
        return _write_sheet(drawn, out, cols)
    return _write_mp4(drawn, out, float(pose.get("fps", 25.0)))


def _write_sheet(drawn: list[np.ndarray], out: Path, cols: int) -> Path:
    from PIL import Image

    cols = max(1, min(cols, len(drawn)))
    rows = -(-len(drawn) // cols)
    th, tw = drawn[0].shape[:2]
    grid = np.full((rows * th, cols * tw, 3), 255, np.uint8)
    for i, img in enumerate(drawn):
        r, c = divmod(i, cols)
        grid[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = img
    image = Image.fromarray(grid)
    if out.suffix.lower() == ".png":  # palette PNG: a fraction of the size of an RGB one
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        image.save(out, optimize=True)
    else:
        image.save(out, quality=88)
    return out


def _write_mp4(drawn: list[np.ndarray], out: Path, fps: float) -> Path:
    import fractions

    import av

    with av.open(str(out), mode="w") as container:
        rate = fractions.Fraction(fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = drawn[0].shape[1], drawn[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for img in drawn:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
