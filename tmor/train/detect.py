"""Frame-wise action detection on untrimmed skeleton sequences.

Model: the UNIK temporal feature map (N, 256, T', V), pooled over joints, a 1x1 temporal
convolution to K logits, upsampled (linear) to the input length: (N, K, W). Multi-label: sigmoid
and binary cross-entropy per frame and class. ``linear`` mode freezes the encoder (features are
computed once), ``finetune`` trains everything. Long sequences run in windows of W frames; the
per-frame probabilities of overlapping windows are averaged back into one (T, K) array.

Writes into ``out``: best.pt / last.pt, ``predictions.npz`` (per test sequence: scores (T, K)
float32, and targets (T, K) uint8 under ``<name>.targets``) and ``results.json`` (TSU and
Charades frame mAP, PKU-MMD event mAP at tIoU 0.1 / 0.3 / 0.5, per class). The best epoch is
chosen on a validation split (the data's ``split_val``, else the last ``val_fraction`` of each
training sequence's frames); the test split is evaluated once with its weights (``best``;
``val_best`` and ``last`` are validation numbers).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tmor.config import known_layout, rules, torch_device
from tmor.devices import resolve_device
from tmor.train.data import (
    DetectionWindows,
    LoadedData,
    frame_targets,
    load_split,
    sequence_input,
    take_window,
    validation_split,
    window_starts,
)


@rules(mode="finetune | linear", val_fraction="(0, 1)", epochs=">= 1", batch_size=">= 1",
       lr="> 0", optimizer="sgd | adamw", weight_decay=">= 0", window=">= 1", stride=">= 1",
       threshold="[0, 1]", min_length=">= 1", thetas="(0, 1]", seed=">= 0",
       channels="2 | 3", max_persons=">= 1", layout=known_layout,
       data_layout=known_layout, device=torch_device)
@dataclass
class DetectConfig:
    """Options of ``tmor-train detect``."""

    data: str = ""
    out: str = "runs/detect"
    mode: str = "finetune"  # "finetune" | "linear"
    split_train: str | None = "train"
    split_test: str | None = "test"
    # model selection (issue 13): the best epoch is chosen on a validation split, the data's
    # split_val, else the last val_fraction of each training sequence; the test split is
    # evaluated once
    split_val: str | None = "val"
    val_fraction: float = 0.1
    init: str | None = None
    epochs: int = 30
    batch_size: int = 16
    lr: float | None = None  # default 1e-3 (adamw) / 0.1 (sgd); linear: 0.01
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    window: int = 64
    stride: int | None = None  # training and inference window stride (default window // 2)
    channels: int | None = None
    max_persons: int | None = None
    layout: str | None = None
    data_layout: str = "ntu25"
    threshold: float = 0.5  # per-frame score -> segment threshold for the event mAP
    min_length: int = 1
    thetas: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5])
    seed: int = 0
    device: str = "auto"


class FrameClassifier:
    """Builds the torch module lazily so importing this file stays light."""

    @staticmethod
    def build(encoder: Any, num_classes: int) -> Any:
        import torch
        import torch.nn.functional as F

        class _Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Conv1d(encoder.embed_dim, num_classes, 1)

            def forward(self, fmap: torch.Tensor, length: int) -> torch.Tensor:
                """(N, 256, T') pooled map -> (N, K, length) logits."""
                return F.interpolate(self.fc(fmap), size=length, mode="linear",
                                     align_corners=False)

        return _Head()


def pooled_map(encoder: Any, x: Any) -> Any:
    """(N, C, W, V, M) -> (N, 256, T') spatially pooled temporal feature map."""
    return encoder.forward_features(x).mean(-1)


def predict_sequence(encoder: Any, head: Any, x: np.ndarray, window: int, stride: int,
                     device: Any, batch: int = 16) -> np.ndarray:
    """(C, T, V, M) sequence -> (T, K) per-frame sigmoid scores, overlapping windows averaged."""
    import torch

    t = x.shape[1]
    starts = window_starts(t, window, stride)
    acc: np.ndarray | None = None
    cnt = np.zeros(t, np.float32)
    encoder.eval()
    head.eval()
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            chunk = starts[i:i + batch]
            xs = np.stack([take_window(x, s, window)[0] for s in chunk])
            prob = torch.sigmoid(head(pooled_map(encoder, torch.from_numpy(xs).to(device)),
                                      window)).float().cpu().numpy()  # (B, K, W)
            if acc is None:
                acc = np.zeros((t, prob.shape[1]), np.float32)
            for s, p in zip(chunk, prob, strict=True):
                n = min(window, t - s)
                acc[s:s + n] += p[:, :n].T
                cnt[s:s + n] += 1
    assert acc is not None
    return acc / np.maximum(cnt, 1)[:, None]


def evaluate_detection(scores: list[np.ndarray], targets: list[np.ndarray], names: list[str],
                       num_classes: int, threshold: float = 0.5, min_length: int = 1,
                       thetas: tuple[float, ...] | list[float] = (0.1, 0.3, 0.5)) -> dict:
    """Frame mAP (TSU pooled, Charades 25 frames a video) and PKU-MMD event mAP of (T, K) scores."""
    from tmor.train import metrics as M

    tsu = M.tsu_frame_map(np.concatenate(scores), np.concatenate(targets))
    cha = M.charades_frame_map(scores, targets)
    props, ground = [], []
    for s, y, n in zip(scores, targets, names, strict=True):
        props += M.scores_to_segments(s, n, threshold, min_length)
        ground += M.labels_to_segments(y, n)
    ev = M.event_map(props, ground, num_classes, tuple(thetas))
    return {
        "frame_map_tsu": tsu.map, "frame_map_charades": cha.map,
        "frame_ap_tsu": tsu.as_dict()["ap"], "frame_ap_charades": cha.as_dict()["ap"],
        "event_map": {f"{k:g}": v["map"] for k, v in ev.items()},
        "event_map_present": {f"{k:g}": v["map_present"] for k, v in ev.items()},
        "event_ap": {f"{k:g}": v["ap"] for k, v in ev.items()},
        "num_proposals": len(props), "num_ground_truth": len(ground),
        "num_frames": int(sum(len(s) for s in scores)),
    }


def run_detection(cfg: DetectConfig, train: LoadedData | None = None,
                  test: LoadedData | None = None, log: Any = print,
                  val: LoadedData | None = None) -> dict:
    """Train and evaluate frame-wise detection; returns the dict written to results.json."""
    import torch

    from tmor import fsio
    from tmor.model.checkpoint import save_checkpoint
    from tmor.train.classify import _snapshot, build_encoder, peek_checkpoint, resolve_spec

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    train = train or load_split(cfg.data, cfg.split_train, cfg.data_layout)
    test = test or load_split(cfg.data, cfg.split_test, cfg.data_layout)
    train, val, val_source = validation_split(cfg.data, cfg.split_val, train, cfg.data_layout,
                                              0.2, cfg.val_fraction, val, by_time=True)
    log(f"model selection on {len(val.samples)} validation sequences ({val_source})")
    classes = train.classes or test.classes
    k = len(classes)
    if k == 0 or not train.samples or not test.samples:
        raise ValueError("detection needs class names and sequences in both splits")
    ckpt = peek_checkpoint(cfg.init)
    spec = resolve_spec(cfg, ckpt)
    spec.frames = cfg.window
    stride = cfg.stride or max(cfg.window // 2, 1)
    train_ds = DetectionWindows(train.samples, k, spec, cfg.window, stride)
    num_joints = train_ds.inputs[0].shape[2]
    encoder, _ = build_encoder(cfg.init, spec, num_joints)
    encoder.to(device)
    head = FrameClassifier.build(encoder, k).to(device)
    linear = cfg.mode == "linear"
    test_x = [sequence_input(s, spec) for s in test.samples]
    test_y = [frame_targets(s.segments, s.num_frames, k) for s in test.samples]
    names = [s.name for s in test.samples]
    val_x = [sequence_input(s, spec) for s in val.samples]
    val_y = [frame_targets(s.segments, s.num_frames, k) for s in val.samples]
    val_names = [s.name for s in val.samples]
    items = [train_ds[i] for i in range(len(train_ds))]
    xs = np.stack([it[0] for it in items])
    ys = torch.from_numpy(np.stack([it[1] for it in items]))  # (N, W, K)
    masks = torch.from_numpy(np.stack([it[2] for it in items]))  # (N, W)
    if linear:
        encoder.requires_grad_(False)
        encoder.eval()
        with torch.no_grad():
            feats = torch.cat([pooled_map(encoder, torch.from_numpy(xs[i:i + cfg.batch_size])
                                          .to(device)).cpu()
                               for i in range(0, len(xs), cfg.batch_size)])
        params = list(head.parameters())
    else:
        params = list(encoder.parameters()) + list(head.parameters())
    lr = cfg.lr or (0.01 if linear else (0.1 if cfg.optimizer == "sgd" else 1e-3))
    opt = (torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                           weight_decay=cfg.weight_decay) if cfg.optimizer == "sgd"
           else torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    fsio.makedirs(cfg.out)
    history, best, best_scores = [], None, None
    t0 = time.time()
    for epoch in range(cfg.epochs):
        perm = rng.permutation(len(xs))
        losses = []
        head.train()
        if not linear:
            encoder.train()
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if not linear and len(idx) < 2:
                continue
            if linear:
                fmap = feats[idx].to(device)
            else:
                fmap = pooled_map(encoder, torch.from_numpy(xs[idx]).to(device))
            logits = head(fmap, cfg.window).transpose(1, 2)  # (B, W, K)
            m = masks[idx].to(device)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[m], ys[idx].to(device)[m])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        scores = [predict_sequence(encoder, head, x, cfg.window, stride, device, cfg.batch_size)
                  for x in val_x]  # validation: model selection only
        ev = evaluate_detection(scores, val_y, val_names, k, cfg.threshold, cfg.min_length,
                                cfg.thetas)
        row = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
               "frame_map_tsu": ev["frame_map_tsu"], "event_map": ev["event_map"]}
        history.append(row)
        log(f"epoch {epoch}: loss {row['loss']} val frame mAP {ev['frame_map_tsu']:.4f} "
            f"event mAP {ev['event_map']}")
        extra = {"classes": classes, "epoch": epoch, "metrics": row, "task": "detection",
                 "input_spec": asdict(spec), "window": cfg.window}
        save_checkpoint(fsio.join(cfg.out, "last.pt"), encoder, head, asdict(cfg), **extra)
        key = ev["frame_map_tsu"] if np.isfinite(ev["frame_map_tsu"]) else -1.0
        if best is None or key > best[0]:
            best = (key, {**ev, "epoch": epoch})
            best_state = _snapshot(encoder, head)
            save_checkpoint(fsio.join(cfg.out, "best.pt"), encoder, head, asdict(cfg), **extra)
    assert best is not None
    # the test split, once, with the weights of the epoch chosen on validation
    encoder.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    best_scores = [predict_sequence(encoder, head, x, cfg.window, stride, device,
                                    cfg.batch_size) for x in test_x]
    test_ev = evaluate_detection(best_scores, test_y, names, k, cfg.threshold, cfg.min_length,
                                 cfg.thetas)
    log(f"test at epoch {best[1]['epoch']} (chosen on validation): frame mAP "
        f"{test_ev['frame_map_tsu']:.4f} event mAP {test_ev['event_map']}")
    buf = io.BytesIO()
    arrays = {n: s.astype(np.float32) for n, s in zip(names, best_scores, strict=True)}
    arrays.update({f"{n}.targets": y for n, y in zip(names, test_y, strict=True)})
    np.savez_compressed(buf, **arrays)
    fsio.write_bytes(fsio.join(cfg.out, "predictions.npz"), buf.getvalue())
    results = {
        "task": "detection", "mode": cfg.mode, "init": cfg.init, "classes": classes,
        "num_train_windows": len(xs), "num_test_sequences": len(test_x),
        "num_val_sequences": len(val_x), "val_source": val_source,
        "best": {**test_ev, "epoch": best[1]["epoch"], "split": "test"}, "val_best": best[1],
        "last": {**ev, "epoch": cfg.epochs - 1, "split": "val"}, "history": history,
        "seconds": time.time() - t0, "config": asdict(cfg), "input_spec": asdict(spec),
    }
    fsio.write_bytes(fsio.join(cfg.out, "results.json"),
                     json.dumps(results, indent=1, default=float).encode())
    return results
