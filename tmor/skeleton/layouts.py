"""Skeleton joint layouts and converters between them (pure numpy).

COCO-17 is tmor's canonical 2D layout. :func:`convert` maps keypoints of shape (..., V, C) (any
C: pixels or metres) and scores (..., V) from one layout to another. Each target joint is a fixed
weighted mean of source joints; its score is the minimum score of the joints it is built from.
A target joint that the source layout lacks is *synthesized* by the rule written next to it in
the tables below; :func:`synthesized` names them, so a consumer can mask or down-weight them.

A target joint with no source at all (an empty rule) is *missing*: coordinates 0 and score 0,
named by :func:`missing`.

Layouts: ``coco17``, ``mediapipe33``, ``unik17``, ``h36m17``, ``ntu25`` (Kinect v2, also NTU RGB+D),
``openpose25`` (OpenPose BODY_25), ``kinect_v1`` (Kinect SDK 1.x, 20 joints: UTKinect-Action3D),
``lcrnet13`` (LCR-Net++ 13 joints: Toyota Smarthome, TSU), ``penn13`` (Penn Action's 13 joints);
aliases in :data:`ALIASES` (e.g. ``kinect25``, ``kinect20``).
Direct converters: mediapipe33 / ntu25 / openpose25 / kinect_v1 / lcrnet13 / penn13 / h36m17 ->
coco17, coco17 -> unik17 / h36m17 / ntu25, ntu25 / kinect_v1 / lcrnet13 / penn13 / h36m17 ->
unik17, ntu25 <-> h36m17, kinect_v1 -> ntu25; other pairs go through coco17.
"""

from __future__ import annotations

import numpy as np

JOINTS: dict[str, tuple[str, ...]] = {
    "coco17": (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    "mediapipe33": (
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
        "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb",
        "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    "unik17": (
        "head", "nose", "neck", "chest", "mid_hip",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    "h36m17": (
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow",
        "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    "ntu25": (
        "spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
        "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip",
        "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle",
        "right_foot", "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip",
        "right_thumb",
    ),
    "openpose25": (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
        "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
        "right_heel",
    ),
    "kinect_v1": (  # NUI_SKELETON_POSITION_INDEX order (FORMATS.md section 7)
        "hip_center", "spine", "shoulder_center", "head", "left_shoulder", "left_elbow",
        "left_wrist", "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee",
        "right_ankle", "right_foot",
    ),
    "lcrnet13": (  # LCR-Net++ order, starting at the right ankle (FORMATS.md section 1)
        "right_ankle", "left_ankle", "right_knee", "left_knee", "right_hip", "left_hip",
        "right_wrist", "left_wrist", "right_elbow", "left_elbow", "right_shoulder",
        "left_shoulder", "head",
    ),
    "penn13": (  # Penn Action README order (FORMATS.md section 3)
        "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
        "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle",
    ),
}  # fmt: skip

#: bones (parent, child) by joint name, for drawing and for skeleton graphs
_BONES: dict[str, tuple[tuple[str, str], ...]] = {
    "coco17": (
        ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
        ("right_eye", "right_ear"), ("left_shoulder", "right_shoulder"),
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"),
    ),
    "unik17": (
        ("head", "nose"), ("nose", "neck"), ("neck", "chest"), ("chest", "mid_hip"),
        ("neck", "left_shoulder"), ("neck", "right_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("mid_hip", "left_hip"), ("mid_hip", "right_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"),
    ),
    "h36m17": (
        ("pelvis", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("pelvis", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("pelvis", "spine"), ("spine", "thorax"), ("thorax", "neck_nose"), ("neck_nose", "head"),
        ("thorax", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("thorax", "right_shoulder"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"),
    ),
    "ntu25": (
        ("spine_base", "spine_mid"), ("spine_mid", "spine_shoulder"), ("spine_shoulder", "neck"),
        ("neck", "head"), ("spine_shoulder", "left_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("left_wrist", "left_hand"), ("left_hand", "left_hand_tip"),
        ("left_wrist", "left_thumb"), ("spine_shoulder", "right_shoulder"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("right_wrist", "right_hand"), ("right_hand", "right_hand_tip"),
        ("right_wrist", "right_thumb"), ("spine_base", "left_hip"), ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"), ("left_ankle", "left_foot"), ("spine_base", "right_hip"),
        ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_foot"),
    ),
    "kinect_v1": (
        ("hip_center", "spine"), ("spine", "shoulder_center"), ("shoulder_center", "head"),
        ("shoulder_center", "left_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("left_wrist", "left_hand"),
        ("shoulder_center", "right_shoulder"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("right_wrist", "right_hand"), ("hip_center", "left_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_foot"),
        ("hip_center", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("right_ankle", "right_foot"),
    ),
    **{name: (
        ("head", "left_shoulder"), ("head", "right_shoulder"),
        ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ) for name in ("lcrnet13", "penn13")},
}  # fmt: skip

_SIDES = ("left", "right")


def _same(names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {n: {n: 1.0} for n in names}


def _mid(a: str, b: str) -> dict[str, float]:
    return {a: 0.5, b: 0.5}


def _limbs() -> dict[str, dict[str, float]]:
    parts = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    return {f"{s}_{p}": {f"{s}_{p}": 1.0} for s in _SIDES for p in parts}


_MID_SHOULDER = _mid("left_shoulder", "right_shoulder")
_TORSO = {"left_shoulder": 0.25, "right_shoulder": 0.25, "left_hip": 0.25, "right_hip": 0.25}
#: joints of a single head point: the nose is a copy of it, eyes and ears are missing
_HEAD_ONLY_FACE = {
    "nose": {"head": 1.0}, "left_eye": {}, "right_eye": {}, "left_ear": {}, "right_ear": {},
}
_THIRTEEN_TO_UNIK = {  # UNIK's read_xyz rule for LCR-Net (FORMATS.md section 1)
    "head": {"head": 1.0},
    "nose": {"head": 0.5, "left_shoulder": 0.25, "right_shoulder": 0.25},  # head-neck midpoint
    "neck": _MID_SHOULDER,
    "chest": _TORSO,
    "mid_hip": _mid("left_hip", "right_hip"),
}
_MID_HIP = _mid("left_hip", "right_hip")
_HEAD = _mid("left_ear", "right_ear")  # skull centre ~ between the ears

# (src, dst) -> {dst joint: {src joint: weight}}; entries of _SYNTH are synthesized joints.
_MAPS: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("mediapipe33", "coco17"): _same(JOINTS["coco17"]),
    ("openpose25", "coco17"): _same(JOINTS["coco17"]),
    ("coco17", "unik17"): {
        "head": _HEAD,  # mid-ears
        "nose": {"nose": 1.0},
        "neck": _MID_SHOULDER,  # mid-shoulders
        "chest": {  # halfway between mid-shoulders and mid-hips
            "left_shoulder": 0.25, "right_shoulder": 0.25, "left_hip": 0.25, "right_hip": 0.25,
        },
        "mid_hip": _MID_HIP,  # mid-hips
        **_limbs(),
    },
    ("coco17", "h36m17"): {  # the MotionBERT / VideoPose3D rule
        "pelvis": _MID_HIP,
        "spine": {  # halfway between pelvis and thorax
            "left_shoulder": 0.25, "right_shoulder": 0.25, "left_hip": 0.25, "right_hip": 0.25,
        },
        "thorax": _MID_SHOULDER,
        "neck_nose": {"nose": 1.0},
        "head": _mid("left_eye", "right_eye"),  # mid-eyes
        **{k: v for k, v in _limbs().items()},
    },
    ("coco17", "ntu25"): {
        "spine_base": _MID_HIP,
        "spine_mid": {
            "left_shoulder": 0.25, "right_shoulder": 0.25, "left_hip": 0.25, "right_hip": 0.25,
        },
        "spine_shoulder": _MID_SHOULDER,
        "neck": {  # halfway between mid-shoulders and the head (mid-ears)
            "left_shoulder": 0.25, "right_shoulder": 0.25, "left_ear": 0.25, "right_ear": 0.25,
        },
        "head": _HEAD,
        **_limbs(),
        **{f"{s}_{p}": {f"{s}_wrist": 1.0} for s in _SIDES for p in ("hand", "hand_tip", "thumb")},
        **{f"{s}_foot": {f"{s}_ankle": 1.0} for s in _SIDES},  # copies of wrist / ankle
    },
    ("ntu25", "coco17"): {
        "nose": {"head": 1.0},  # face joints: copies of the Kinect head joint
        "left_eye": {"head": 1.0}, "right_eye": {"head": 1.0},
        "left_ear": {"head": 1.0}, "right_ear": {"head": 1.0},
        **_limbs(),
    },
    ("ntu25", "unik17"): {
        "head": {"head": 1.0},
        "nose": {"head": 1.0},  # copy of the head joint
        "neck": {"spine_shoulder": 1.0},
        "chest": {"spine_mid": 1.0},
        "mid_hip": {"spine_base": 1.0},
        **_limbs(),
    },
    ("ntu25", "h36m17"): {
        "pelvis": {"spine_base": 1.0}, "spine": {"spine_mid": 1.0},
        "thorax": {"spine_shoulder": 1.0}, "neck_nose": {"neck": 1.0}, "head": {"head": 1.0},
        **_limbs(),
    },
    # H36M-17 (MotionBERT's 3D output): its joint 9 is COCO's nose and its head the mid-eyes
    # in MotionBERT's coco2h36m; the torso joints are the same mid-points as coco17 -> unik17's
    ("h36m17", "coco17"): {
        "nose": {"neck_nose": 1.0}, "left_eye": {"head": 1.0}, "right_eye": {"head": 1.0},
        "left_ear": {"head": 1.0}, "right_ear": {"head": 1.0}, **_limbs(),
    },
    ("h36m17", "unik17"): {
        "head": {"head": 1.0}, "nose": {"neck_nose": 1.0}, "neck": {"thorax": 1.0},
        "chest": {"spine": 1.0}, "mid_hip": {"pelvis": 1.0}, **_limbs(),
    },
    ("h36m17", "ntu25"): {  # the inverse of ntu25 -> h36m17; hands and feet as coco17's
        "spine_base": {"pelvis": 1.0}, "spine_mid": {"spine": 1.0},
        "spine_shoulder": {"thorax": 1.0}, "neck": {"neck_nose": 1.0}, "head": {"head": 1.0},
        **_limbs(),
        **{f"{s}_{p}": {f"{s}_wrist": 1.0} for s in _SIDES for p in ("hand", "hand_tip", "thumb")},
        **{f"{s}_foot": {f"{s}_ankle": 1.0} for s in _SIDES},
    },
    ("kinect_v1", "coco17"): {**_HEAD_ONLY_FACE, **_limbs()},
    ("kinect_v1", "unik17"): {
        "head": {"head": 1.0}, "nose": {"head": 1.0}, "neck": {"shoulder_center": 1.0},
        "chest": {"spine": 1.0}, "mid_hip": {"hip_center": 1.0}, **_limbs(),
    },
    ("kinect_v1", "ntu25"): {  # FORMATS.md section 7: v1 {0..3, 4..19} = v2 {0, 1, 20, 3, 4..19}
        "spine_base": {"hip_center": 1.0}, "spine_mid": {"spine": 1.0},
        "neck": _mid("shoulder_center", "head"), "head": {"head": 1.0},
        "spine_shoulder": {"shoulder_center": 1.0}, **_limbs(),
        **{f"{s}_{p}": {f"{s}_{p}": 1.0} for s in _SIDES for p in ("hand", "foot")},
        **{f"{s}_{p}": {} for s in _SIDES for p in ("hand_tip", "thumb")},
    },
    ("lcrnet13", "coco17"): {**_HEAD_ONLY_FACE, **_limbs()},
    ("lcrnet13", "unik17"): {**_THIRTEEN_TO_UNIK, **_limbs()},
    ("penn13", "coco17"): {**_HEAD_ONLY_FACE, **_limbs()},
    ("penn13", "unik17"): {**_THIRTEEN_TO_UNIK, **_limbs()},
}  # fmt: skip

#: (src, dst) -> target joints that the source lacks (built by a rule, not observed)
_SYNTH: dict[tuple[str, str], frozenset[str]] = {
    ("coco17", "unik17"): frozenset({"head", "neck", "chest", "mid_hip"}),
    ("coco17", "h36m17"): frozenset({"pelvis", "spine", "thorax", "head"}),
    ("coco17", "ntu25"): frozenset(
        {"spine_base", "spine_mid", "spine_shoulder", "neck", "head"}
        | {f"{s}_{p}" for s in _SIDES for p in ("hand", "hand_tip", "thumb", "foot")}
    ),
    ("ntu25", "coco17"): frozenset({"nose", "left_eye", "right_eye", "left_ear", "right_ear"}),
    ("ntu25", "unik17"): frozenset({"nose"}),
    ("ntu25", "h36m17"): frozenset(),
    ("h36m17", "coco17"): frozenset({"left_eye", "right_eye", "left_ear", "right_ear"}),
    ("h36m17", "unik17"): frozenset(),
    ("h36m17", "ntu25"): frozenset(
        {f"{s}_{p}" for s in _SIDES for p in ("hand", "hand_tip", "thumb", "foot")}),
    ("mediapipe33", "coco17"): frozenset(),
    ("openpose25", "coco17"): frozenset(),
    ("kinect_v1", "coco17"): frozenset({"nose"}),
    ("kinect_v1", "unik17"): frozenset({"nose"}),
    ("kinect_v1", "ntu25"): frozenset({"neck"}),
    ("lcrnet13", "coco17"): frozenset({"nose"}),
    ("lcrnet13", "unik17"): frozenset({"nose", "neck", "chest", "mid_hip"}),
    ("penn13", "coco17"): frozenset({"nose"}),
    ("penn13", "unik17"): frozenset({"nose", "neck", "chest", "mid_hip"}),
}

#: other names of the same layouts
ALIASES = {"kinect25": "ntu25", "kinect_v2": "ntu25", "coco": "coco17", "h36m": "h36m17",
           "body25": "openpose25", "mediapipe": "mediapipe33", "kinect20": "kinect_v1",
           "utkinect": "kinect_v1", "lcrnet": "lcrnet13", "penn_action": "penn13"}
for _alias, _name in ALIASES.items():
    JOINTS[_alias] = JOINTS[_name]

LAYOUTS = tuple(n for n in JOINTS if n not in ALIASES)


def num_joints(layout: str) -> int:
    """Number of joints V of a layout."""
    return len(JOINTS[_check(layout)])


def bones(layout: str) -> list[tuple[int, int]]:
    """(parent, child) joint index pairs of a layout (for drawing and graphs)."""
    layout = _check(layout)
    names = JOINTS[layout]
    if layout in _BONES:
        pairs = _BONES[layout]
    else:  # layouts without their own table: the COCO-17 bones of their shared joints
        pairs = tuple(p for p in _BONES["coco17"] if p[0] in names and p[1] in names)
    return [(names.index(a), names.index(b)) for a, b in pairs]


def _check(layout: str) -> str:
    """The canonical name of ``layout`` (aliases resolved); ValueError when unknown."""
    if layout not in JOINTS:
        raise ValueError(f"unknown joint layout {layout!r}; known: {', '.join(JOINTS)}")
    return ALIASES.get(layout, layout)


def _path(src: str, dst: str) -> list[tuple[str, str]]:
    src, dst = _check(src), _check(dst)
    if src == dst:
        return []
    if (src, dst) in _MAPS:
        return [(src, dst)]
    if (src, "coco17") in _MAPS and ("coco17", dst) in _MAPS:
        return [(src, "coco17"), ("coco17", dst)]
    raise ValueError(f"no converter from {src!r} to {dst!r}")


def _matrix(src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights (Vdst, Vsrc) and the mask (Vdst, Vsrc) of contributing source joints."""
    s_names, d_names = JOINTS[src], JOINTS[dst]
    table = _MAPS[(src, dst)]
    w = np.zeros((len(d_names), len(s_names)), np.float64)
    for i, name in enumerate(d_names):
        for sj, weight in table[name].items():
            w[i, s_names.index(sj)] = weight
    return w, w > 0


def synthesized(src: str, dst: str) -> list[str]:
    """Names of the ``dst`` joints that converting from ``src`` synthesizes (not observed)."""
    out: set[str] = set()
    for a, b in _path(src, dst):
        step = set(_SYNTH[(a, b)])
        if out:  # a joint built from synthesized joints is synthesized too
            w, used = _matrix(a, b)
            names_a = JOINTS[a]
            for i, name in enumerate(JOINTS[b]):
                if any(names_a[j] in out for j in np.flatnonzero(used[i])):
                    step.add(name)
        out = step
    return [n for n in JOINTS[_check(dst)] if n in out]


def missing(src: str, dst: str) -> list[str]:
    """Names of the ``dst`` joints that converting from ``src`` cannot build (coordinates 0,
    score 0): a joint with no source, or built from such a joint on the way."""
    out: set[str] = set()
    for a, b in _path(src, dst):
        w, used = _matrix(a, b)
        names_a, step = JOINTS[a], set()
        for i, name in enumerate(JOINTS[b]):
            srcs = np.flatnonzero(used[i])
            if srcs.size == 0 or any(names_a[j] in out for j in srcs):
                step.add(name)
        out = step
    return [n for n in JOINTS[_check(dst)] if n in out]


def synthesized_mask(src: str, dst: str) -> np.ndarray:
    """Boolean (V_dst,) mask of synthesized joints, see :func:`synthesized`."""
    names = set(synthesized(src, dst))
    return np.array([n in names for n in JOINTS[_check(dst)]], bool)


def convert(
    keypoint: np.ndarray,
    scores: np.ndarray | None,
    src_layout: str,
    dst_layout: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert keypoints (..., V_src, C) and scores (..., V_src) to ``dst_layout``.

    Returns (keypoint (..., V_dst, C) in the input's float dtype, scores (..., V_dst) or None).
    A target joint's score is the minimum of the scores of the joints it is built from; a
    missing joint (no source) has coordinates 0 and score 0.
    """
    kp = np.asarray(keypoint)
    sc = None if scores is None else np.asarray(scores)
    if kp.shape[-2] != num_joints(src_layout):
        raise ValueError(
            f"keypoint has {kp.shape[-2]} joints, layout {src_layout!r} has "
            f"{num_joints(src_layout)}"
        )
    dtype = kp.dtype if np.issubdtype(kp.dtype, np.floating) else np.float32
    for a, b in _path(src_layout, dst_layout):
        w, used = _matrix(a, b)
        kp = np.einsum("ds,...sc->...dc", w, kp.astype(np.float64, copy=False))
        if sc is not None:
            big = np.where(used, sc[..., None, :], np.inf)  # (..., Vdst, Vsrc)
            low = np.where(used.any(axis=-1), big.min(axis=-1), 0)
            sc = low.astype(sc.dtype, copy=False)
    kp = np.asarray(kp, dtype=dtype)
    return kp, sc


def layouts_with(num: int) -> list[str]:
    """Canonical names of the layouts with ``num`` joints (aliases left out)."""
    return [n for n in LAYOUTS if len(JOINTS[n]) == num]


def check_layout(layout: str, num: int, what: str = "arrays") -> None:
    """ValueError unless ``layout`` has ``num`` joints; the message names the layouts that fit."""
    name = _check(layout)
    if len(JOINTS[name]) == num:
        return
    fits = layouts_with(num)
    named = [f"{n} ({', '.join(a for a, c in ALIASES.items() if c == n)})"
             if any(c == n for c in ALIASES.values()) else n for n in fits]
    hint = f"layouts with {num} joints: {', '.join(named)}" if fits else (
        f"no known layout has {num} joints")
    raise ValueError(f"{what} have {num} joints but layout {layout!r} has {len(JOINTS[name])}; "
                     f"{hint}")
