"""Linear probe (frozen encoder, a linear classifier on the pooled 256-d feature) and fine-tuning
(the whole network) for skeleton action classification.

Writes into ``out``: ``best.pt`` and ``last.pt`` (tmor checkpoints: the encoder, the classifier as
``heads``, the config, class names, epoch, metrics), ``results.json`` and ``confusion.png``. The
best epoch is chosen on a validation split (the data's ``split_val``, else ``val_fraction`` of
train); the test split is evaluated once, with the chosen epoch's weights: ``best`` holds those
test numbers (top-1, top-5, mean per-class accuracy, per-class table, confusion), ``val_best``
and ``last`` the validation numbers of the chosen and the last epoch, ``history`` every epoch's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tmor.config import known_layout, rules, torch_device
from tmor.devices import resolve_device
from tmor.train.data import (
    ClassificationDataset,
    InputSpec,
    LoadedData,
    load_split,
    validation_split,
)


@rules(mode="finetune | linear", val_fraction="(0, 1)", epochs=">= 1", min_steps=">= 1",
       warmup="[0, 1)", metric="top1 | top5 | mean_class_accuracy", batch_size=">= 1",
       lr="> 0", optimizer="sgd | adamw", weight_decay=">= 0", holdout="(0, 1)", seed=">= 0",
       num_workers=">= 0", frames=">= 1", channels="2 | 3", max_persons=">= 1", layout=known_layout,
       data_layout=known_layout, device=torch_device)
@dataclass
class ClassifyConfig:
    """Options of ``tmor-train linear-probe`` / ``finetune`` (a YAML file can set each)."""

    data: str = ""
    out: str = "runs/transfer"
    mode: str = "finetune"  # "finetune" | "linear"
    split_train: str | None = "train"
    split_test: str | None = "test"
    # model selection (issue 13): the best epoch is chosen on a validation split, the data's
    # split_val or val_fraction of train carved by name hash; the test split is evaluated once
    split_val: str | None = "val"
    val_fraction: float = 0.1
    init: str | None = None  # checkpoint; None trains from scratch
    epochs: int | None = None  # default: 30, or more to reach min_steps (see resolve_schedule)
    min_steps: int = 1500  # floor of optimizer steps when epochs is not given (small sets)
    warmup: float = 0.05  # fraction of the steps with a linear learning-rate warm-up
    metric: str = "top1"  # picks the best epoch: top1 | mean_class_accuracy (Smarthome)
    batch_size: int = 32
    lr: float | None = None  # default: 0.1 (sgd) / 1e-3 (adamw); linear probe: 0.01 (adamw)
    optimizer: str = "sgd"  # "sgd" | "adamw"
    weight_decay: float = 5e-4
    frames: int | None = None  # default: the checkpoint's, else 64
    channels: int | None = None  # default: the checkpoint's in_channels, else 3 for 3D data, 2
    max_persons: int | None = None  # default: the checkpoint's num_persons, else 2
    layout: str | None = None  # convert the data to this layout (the checkpoint's by default)
    data_layout: str = "coco17"  # layout of pickles that do not say
    augment: bool = True
    holdout: float = 0.2  # shards without a split: fraction held out by key hash
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0


def resolve_schedule(cfg: ClassifyConfig, n_train: int) -> tuple[int, int]:
    """(epochs, total optimizer steps). Given epochs are kept; without them the run lasts
    max(30 epochs, ``min_steps`` steps), so a set of a few hundred samples still gets ~1.5k
    steps instead of ~100."""
    per_epoch = max(1, n_train // cfg.batch_size + (n_train % cfg.batch_size >= 2))
    epochs = cfg.epochs
    if epochs is None:
        epochs = max(30, -(-cfg.min_steps // per_epoch))
    return int(epochs), int(epochs) * per_epoch


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the steps, then cosine to 0 (per optimizer step)."""
    w = int(total * warmup)
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + float(np.cos(np.pi * (step - w) / max(total - w, 1))))


def resolve_spec(cfg: Any, ckpt: dict | None, data_channels: int = 2) -> InputSpec:
    """Input T / C / M / layout: explicit options, else the checkpoint's, else defaults (C: the
    data's own, ``data_channels``; layout: the data's own)."""
    mc = (ckpt or {}).get("model_config") or {}
    tc = (ckpt or {}).get("train_config") or {}

    def pick(value: Any, *keys: str, default: Any) -> Any:
        if value is not None:
            return value
        for k in keys:
            for src in (tc, tc.get("data") if isinstance(tc.get("data"), dict) else {}):
                if src.get(k) is not None:
                    return src[k]
        return default

    return InputSpec(
        frames=int(pick(getattr(cfg, "frames", None), "frames", "num_frames", "T", default=64)),
        channels=int(cfg.channels or mc.get("in_channels") or data_channels),
        max_persons=int(cfg.max_persons or mc.get("num_persons") or 2),
        layout=pick(cfg.layout, "layout", "dst_layout", default=None),
    )


def build_encoder(init: str | None, spec: InputSpec, num_joints: int) -> tuple[Any, dict | None]:
    """The UNIK encoder: loaded from ``init`` or freshly initialized for (C, V, M) of ``spec``."""
    from tmor.model.unik import UNIK

    if init is None:
        return UNIK(spec.channels, num_joints, spec.max_persons), None
    from tmor.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(init)
    enc = UNIK.from_config(ckpt["model_config"])
    enc.load_state_dict(ckpt["encoder"])
    c = enc.config
    if (c.in_channels, c.num_joints, c.num_persons) != (spec.channels, num_joints,
                                                        spec.max_persons):
        raise ValueError(
            f"{init}: encoder expects C={c.in_channels} V={c.num_joints} M={c.num_persons}, "
            f"data gives C={spec.channels} V={num_joints} M={spec.max_persons}: "
            "set --layout / --channels / --max-persons to match")
    return enc, ckpt


def peek_checkpoint(init: str | None) -> dict | None:
    if init is None:
        return None
    from tmor.model.checkpoint import load_checkpoint

    return load_checkpoint(init)


def stack_inputs(ds: ClassificationDataset) -> tuple[np.ndarray, np.ndarray]:
    """All items of a dataset as arrays (N, C, T, V, M) float32, (N,) int64."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return np.stack(xs), np.asarray(ys, np.int64)


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """top-1 / top-5 / mean per-class accuracy and the per-class table of (N, K) scores."""
    from tmor.train import metrics as M

    k5 = min(5, scores.shape[1])
    return {
        "top1": M.top_k_accuracy(scores, labels, 1),
        "top5": M.top_k_accuracy(scores, labels, k5),
        "mean_class_accuracy": M.mean_class_accuracy(scores, labels),
        "num_samples": int(len(labels)),
        "per_class": M.per_class_table(scores, labels, classes),
    }


def _snapshot(*modules: Any) -> list[dict]:
    """CPU copies of the modules' state dicts (the weights of the chosen epoch)."""
    return [{k: v.detach().clone().cpu() for k, v in m.state_dict().items()} for m in modules]


def _predict(model: Any, x: np.ndarray, device: Any, batch: int) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch]).to(device)
            out.append(torch.softmax(model(xb).float(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _features(encoder: Any, x: np.ndarray, device: Any, batch: int) -> np.ndarray:
    import torch

    encoder.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(encoder(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu())
    return torch.cat(out).numpy()


def run_classification(cfg: ClassifyConfig, train: LoadedData | None = None,
                       test: LoadedData | None = None, log: Any = print,
                       val: LoadedData | None = None) -> dict:
    """Train and evaluate; returns the results dict also written to ``<out>/results.json``."""
    import torch

    from tmor import fsio
    from tmor.model.checkpoint import save_checkpoint
    from tmor.train import metrics as M

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    train = train or load_split(cfg.data, cfg.split_train, cfg.data_layout, cfg.holdout)
    test = test or load_split(cfg.data, cfg.split_test, cfg.data_layout, cfg.holdout)
    train, val, val_source = validation_split(cfg.data, cfg.split_val, train, cfg.data_layout,
                                              cfg.holdout, cfg.val_fraction, val)
    log(f"model selection on {len(val.samples)} validation samples ({val_source})")
    classes = train.classes if len(train.classes) >= len(test.classes) else test.classes
    dropped = {n: sum(s.label < 0 for s in d.samples) for n, d in (("train", train),
                                                                     ("test", test))}
    if any(dropped.values()):
        log(f"skipping samples without a label: {dropped}")
        train = LoadedData([s for s in train.samples if s.label >= 0], train.classes)
        test = LoadedData([s for s in test.samples if s.label >= 0], test.classes)
    val = LoadedData([s for s in val.samples if s.label >= 0], val.classes)
    k = len(classes)
    if not train.samples or not test.samples:
        raise ValueError(f"empty split: {len(train.samples)} train, {len(test.samples)} test")
    from tmor.train.data import data_channels

    ckpt = peek_checkpoint(cfg.init)
    spec = resolve_spec(cfg, ckpt, data_channels(train.samples))
    if cfg.metric not in ("top1", "top5", "mean_class_accuracy"):
        raise ValueError(f"metric {cfg.metric!r}: choose top1, top5 or mean_class_accuracy")
    test_ds = ClassificationDataset(test.samples, spec)
    x_test, y_test = stack_inputs(test_ds)
    x_val, y_val = stack_inputs(ClassificationDataset(val.samples, spec))
    num_joints = x_test.shape[3]
    encoder, _ = build_encoder(cfg.init, spec, num_joints)
    encoder.to(device)
    head = torch.nn.Linear(encoder.embed_dim, k).to(device)
    fsio.makedirs(cfg.out)
    history: list[dict] = []
    best: dict | None = None
    linear = cfg.mode == "linear"
    t0 = time.time()
    if linear:
        encoder.requires_grad_(False)
        x_train, y_train = stack_inputs(ClassificationDataset(train.samples, spec))
        f_train = torch.from_numpy(_features(encoder, x_train, device, cfg.batch_size))
        f_val = torch.from_numpy(_features(encoder, x_val, device, cfg.batch_size))
        params = list(head.parameters())
    else:
        train_ds = ClassificationDataset(train.samples, spec, augment=cfg.augment, seed=cfg.seed)
        model = torch.nn.Sequential(encoder, head)
        params = list(model.parameters())
    lr = cfg.lr or (0.01 if linear else (0.1 if cfg.optimizer == "sgd" else 1e-3))
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    n_train = len(train.samples)
    epochs, total_steps = resolve_schedule(cfg, n_train)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total_steps, cfg.warmup))
    eval_every = -(-epochs // 50)  # at most ~50 evaluations, and always the last epoch
    log(f"schedule: {epochs} epochs, {total_steps} steps, input {asdict(spec)}")
    for epoch in range(epochs):
        perm = rng.permutation(n_train)
        losses = []
        if linear:
            head.train()
            for i in range(0, n_train, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                logits = head(f_train[idx].to(device))
                loss = torch.nn.functional.cross_entropy(
                    logits, torch.from_numpy(y_train[idx]).to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
            with torch.no_grad():
                scores = torch.softmax(head(f_val.to(device)), -1).cpu().numpy()
        else:
            model.train()
            train_ds.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                train_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                sampler=[int(j) for j in perm], pin_memory=device.type == "cuda")
            for xb, yb in loader:
                if len(yb) < 2:  # BatchNorm needs two samples
                    continue
                logits = model(xb.to(device, non_blocking=True))
                loss = torch.nn.functional.cross_entropy(logits, yb.to(device).long())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
            if (epoch + 1) % eval_every and epoch != epochs - 1:
                continue
            scores = _predict(model, x_val, device, cfg.batch_size)
        ev = evaluate_scores(scores, y_val, classes)  # validation: model selection only
        row = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
               **{m: ev[m] for m in ("top1", "top5", "mean_class_accuracy")}}
        history.append(row)
        log(f"epoch {epoch}: loss {row['loss']} val top1 {ev['top1']:.4f} "
            f"top5 {ev['top5']:.4f} mean_class {ev['mean_class_accuracy']:.4f}")
        extra = {"classes": classes, "epoch": epoch, "metrics": row, "task": "classification",
                 "input_spec": asdict(spec)}
        save_checkpoint(fsio.join(cfg.out, "last.pt"), encoder, head, asdict(cfg), **extra)
        if best is None or ev[cfg.metric] > best[cfg.metric]:
            best = {**ev, "epoch": epoch}
            best_state = _snapshot(encoder, head)
            save_checkpoint(fsio.join(cfg.out, "best.pt"), encoder, head, asdict(cfg), **extra)
    assert best is not None
    last = evaluate_scores(scores, y_val, classes)
    # the test split, once, with the weights of the epoch chosen on validation
    encoder.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    if linear:
        f_test = torch.from_numpy(_features(encoder, x_test, device, cfg.batch_size))
        with torch.no_grad():
            best_scores = torch.softmax(head(f_test.to(device)), -1).cpu().numpy()
    else:
        best_scores = _predict(model, x_test, device, cfg.batch_size)
    val_best, best = best, {**evaluate_scores(best_scores, y_test, classes),
                            "epoch": best["epoch"], "split": "test"}
    log(f"test at epoch {best['epoch']} (chosen on validation): top1 {best['top1']:.4f} "
        f"mean_class {best['mean_class_accuracy']:.4f}")
    cm = M.confusion_matrix(best_scores.argmax(1), y_test, k)
    M.save_confusion_png(cm, fsio.join(cfg.out, "confusion.png"), classes)
    results = {
        "task": "classification", "mode": cfg.mode, "init": cfg.init, "classes": classes,
        "chance": 1.0 / k, "num_train": n_train, "num_test": len(y_test),
        "metric": cfg.metric, "num_val": len(y_val), "val_source": val_source,
        "best": best, "val_best": val_best,
        "last": {**last, "epoch": epochs - 1, "split": "val"},
        "confusion": cm.tolist(), "history": history, "seconds": time.time() - t0,
        "config": asdict(cfg), "input_spec": asdict(spec),
    }
    fsio.write_bytes(fsio.join(cfg.out, "results.json"),
                     json.dumps(results, indent=1, default=float).encode())
    return results
