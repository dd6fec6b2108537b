"""Cluster-guided multi-modal contrastive pre-training of the UNIK encoder (T-MOR).

Stage 1: L = L_mm + L_mv (augmented motion view, frozen video embedding); stage 2: L_mt (frozen
text embedding), usually from ``init`` = the stage-1 checkpoint; ``losses`` picks any subset.
Batches stream from triplet shards (:func:`tmor.shards.reader.make_loader`). After each epoch an
inference pass embeds every sample and exact DBSCAN relabels the corpus; the labels select the
positives and negatives of the loss (:mod:`tmor.model.losses`) through the queues' indices.

Runs alone or under ``torchrun`` (DDP: NCCL on GPU, gloo on CPU; BatchNorm synchronized, keys
gathered with gradients, so N ranks compute what one process computes on the global batch).
Checkpoints (``<out_dir>/last.pt`` every ``ckpt_every`` steps and each epoch, ``epoch_NNN.pt``)
hold everything an exact resume needs: model, optimizer, scheduler, scaler, queues, cluster
labels, RNG states and the reader position (epoch, batches consumed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tmor import fsio
from tmor.model.checkpoint import load_checkpoint, save_checkpoint
from tmor.model.heads import ProjectionHeads
from tmor.model.losses import cluster_contrastive_loss, effective_clusters
from tmor.model.queue import FeatureQueue
from tmor.model.unik import UNIK
from tmor.skeleton.augment import augment
from tmor.train.config import PretrainConfig
from tmor.train.corpus import (
    check_resume_corpus,
    corpus_index_hash,
    corpus_size,
    reader_config,
    usable_pairs,
)
from tmor.train.dist import (
    DistContext,
    gather,
    gather_host,
    init_distributed,
    mean_over_ranks,
    sync_batchnorm,
)
from tmor.train.guidance import batch_dominated, plan_schedule
from tmor.train.recluster import GUIDE_FIELDS, recluster
from tmor.train.runlog import (
    CLUSTER_FIELDS,
    METRIC_FIELDS,
    CsvLog,
    Reporters,
    corpus_card_hash,
    parse_report_to,
    plot_curves,
)

log = logging.getLogger(__name__)


class Pretrainer(nn.Module):
    """Encoder + heads in one module (what DDP wraps): views -> (query, key) per pair."""

    def __init__(self, encoder: UNIK, heads: ProjectionHeads, pairs: list[str]) -> None:
        super().__init__()
        self.encoder, self.heads, self.pairs = encoder, heads, list(pairs)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor | None, video: torch.Tensor,
                text: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        n = v1.shape[0]
        z = self.encoder(v1 if v2 is None else torch.cat([v1, v2]))
        z1 = z[:n]
        out = {}
        for p in self.pairs:
            q = self.heads.project_motion(p, z1)
            if p == "mm":
                assert v2 is not None
                k = self.heads.project_motion(p, z[n:])
            else:
                k = self.heads.project_target(p, video if p == "mv" else text)
            out[p] = (q, k)
        return out


def lr_lambda(warmup: int, total: int, floor: float):
    """Linear warm-up then cosine decay to ``floor`` (a multiplier of the base lr)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return f


class Trainer:
    """Model, optimizer, queues and cluster labels of one pre-training run; ``train_step``."""

    def __init__(self, cfg: PretrainConfig, ctx: DistContext, in_channels: int, num_joints: int,
                 num_persons: int, video_dim: int, text_dim: int, total_steps: int,
                 steps_per_epoch: int | None = None) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.schedule = plan_schedule(cfg, steps_per_epoch or total_steps, total_steps)
        self.pairs = cfg.pairs()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.encoder = UNIK(in_channels, num_joints, num_persons, cfg.num_heads,
                            base_channels=cfg.base_channels)
        self.heads = ProjectionHeads(self.encoder.embed_dim, max(video_dim, 1),
                                     max(text_dim, 1), cfg.proj_dim, cfg.hidden_dim,
                                     tuple(self.pairs))
        if cfg.init:
            self._load_init(cfg.init)
        dev = ctx.device
        self.model: nn.Module = Pretrainer(self.encoder, self.heads, self.pairs).to(dev)
        if ctx.enabled:
            self.model = sync_batchnorm(self.model, dev)
            self.encoder, self.heads = self.model.encoder, self.model.heads
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}: sgd | adamw")
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(self.schedule.lr_warmup, total_steps, cfg.min_lr_ratio))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        if dev.type != "cuda":
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.queues = {p: FeatureQueue(cfg.queue_size, cfg.proj_dim, dev) for p in self.pairs}
        self.table: torch.Tensor | None = None  # global index -> cluster (-1 noise), on device
        self.table_clusters = 0                 # its number of clusters (known on the host)
        self.step = self.epoch = self.step_in_epoch = 0
        # rows of the steps not yet logged: (row, names of its tensors, their values, samples,
        # seconds of the step on the host)
        self._pending: list[tuple[dict[str, Any], list[str], torch.Tensor, int, float]] = []
        self._interval_start: float | None = None
        self.corpus: dict[str, Any] = {}  # index hash of the shards (set by run_pretrain)

    def _load_init(self, url: str) -> None:
        ck = load_checkpoint(url)
        self.encoder.load_state_dict(ck["encoder"])
        if ck.get("heads"):  # reuse the heads whose shapes match (stage 1 -> stage 2)
            own = self.heads.state_dict()
            keep = {k: v for k, v in ck["heads"].items() if k in own and own[k].shape == v.shape}
            self.heads.load_state_dict(keep, strict=False)
        log.info("initialized from %s", url)

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One optimizer step on this rank's part of the global batch.

        Returns the step's row: ``lr`` as a number, the global-mean statistics (``loss``,
        ``loss_<pair>``, ``pos_<pair>``, ``guided``) as 0-d tensors on the device, so that a
        step never waits for the device (reading one does); :meth:`flush_rows` turns the rows
        of the steps since its last call into numbers with one copy."""
        cfg, dev = self.cfg, self.ctx.device
        t0 = time.perf_counter()
        if self._interval_start is None:
            self._interval_start = t0
        index_host = batch["index"].cpu()
        if (index_host < 0).any():  # checked on the host copy: no device round trip
            raise ValueError("samples without a global index: the shard folder needs its "
                             "index.parquet (tmor.shards.index.write_index)")
        x = batch["pose"].to(dev, non_blocking=True)
        n = x.shape[0]
        total, offset = n * self.ctx.world, n * self.ctx.rank
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        aug = dict(min_crop=cfg.min_crop, max_deg=cfg.max_rotation, max_shear=cfg.max_shear,
                   total=total, offset=offset)
        v1 = augment(x, gen, **aug)
        v2 = augment(x, gen, **aug) if "mm" in self.pairs else None
        index = index_host.to(dev, non_blocking=True)
        # which samples have a video / text embedding, for this rank and (gathered over the
        # CPU group) for the global batch: known on the host, so the pushes need no device read
        host_valid = {"mm": torch.ones(n, dtype=torch.bool),
                      "mv": batch["has_video"].cpu().bool(), "mt": batch["has_text"].cpu().bool()}
        host_valid_all = dict(zip(host_valid, gather_host(
            torch.stack(list(host_valid.values())), self.ctx).unbind(0), strict=True))
        self.model.train()
        with (torch.autocast(dev.type, dtype=self.amp_dtype) if self.amp_dtype is not None
              else contextlib.nullcontext()):
            out = self.model(v1, v2, batch["video"].to(dev, non_blocking=True),
                             batch["text"].to(dev, non_blocking=True))
        index_all = gather(index)
        # cluster guidance only when on, after its warm-up, never from a step's dominant cluster
        # (decided on the device: a dominated step takes every sample's own cluster)
        table = self.guide_table()
        guided = torch.zeros((), device=dev)
        if table is not None:
            n_clusters = self.table_clusters
            dominated = torch.stack([
                batch_dominated(effective_clusters(torch.cat([index_all, qi]), table),
                                cfg.max_cluster_fraction, n_clusters)
                for _, qi in (self.queues[p].entries() for p in out)]).any()
            guided = (~dominated).float() if n_clusters else guided

        def clusters_of(idx: torch.Tensor) -> torch.Tensor:
            if table is None:
                return effective_clusters(idx, None)
            return torch.where(dominated, effective_clusters(idx, None),
                               effective_clusters(idx, table))

        qc = clusters_of(index)
        loss = torch.zeros((), device=dev)
        stats: dict[str, torch.Tensor] = {}
        pushes = []
        for p, (q, k) in out.items():
            k_all = gather(k.float(), grad=True)
            kv_all = host_valid_all[p].to(dev, non_blocking=True)
            qf, qi = self.queues[p].entries()
            cands = torch.cat([k_all, qf])
            cc = clusters_of(torch.cat([index_all, qi]))
            cv = torch.cat([kv_all, torch.ones(len(qi), dtype=torch.bool, device=dev)])
            lp, st = cluster_contrastive_loss(q, cands, qc, cc, cfg.temperature,
                                              query_valid=host_valid[p].to(dev, non_blocking=True),
                                              cand_valid=cv)
            loss = loss + lp
            stats[f"loss_{p}"], stats[f"pos_{p}"] = lp.detach(), st["positives"]
            keep = torch.nonzero(host_valid_all[p]).flatten()  # host rows: no device read
            if len(keep) == len(host_valid_all[p]):
                pushes.append((p, k_all.detach(), index_all))
            else:
                keep = keep.to(dev, non_blocking=True)
                pushes.append((p, k_all.detach().index_select(0, keep),
                               index_all.index_select(0, keep)))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        lr = self.opt.param_groups[0]["lr"]
        self.sched.step()
        for p, feats, idx in pushes:
            self.queues[p].push(feats, idx)
        self.step += 1
        self.step_in_epoch += 1
        stats["guided"] = guided  # the same on every rank (decided on the gathered batch)
        names = ["loss", *sorted(stats)]
        means = mean_over_ranks(torch.stack([loss.detach()] + [stats[k] for k in names[1:]])
                                .float())
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "lr": lr,
                               **dict(zip(names, means.unbind(0), strict=True))}
        self._pending.append((row, names, means, total, time.perf_counter() - t0))
        return row

    def flush_rows(self) -> list[dict[str, Any]]:
        """The rows of the steps since the last call, every statistic a number (one device copy
        for all of them). ``samples_per_s``: on a GPU the interval's mean (its steps' samples
        over the wall time from the start of its first step to this copy, which waits for the
        device), on the CPU each step's own."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        values = torch.stack([p[2] for p in pending]).cpu().tolist()
        interval = None
        if self.ctx.device.type != "cpu" and self._interval_start is not None:
            seconds = time.perf_counter() - self._interval_start
            interval = sum(p[3] for p in pending) / max(seconds, 1e-9)
        self._interval_start = None  # the next interval starts with its first step
        rows = []
        for (row, names, _, samples, seconds), vals in zip(pending, values, strict=True):
            out = {**row, **dict(zip(names, vals, strict=True))}
            out["samples_per_s"] = interval if interval is not None else samples / seconds
            rows.append(out)
        return rows

    def guide_table(self) -> torch.Tensor | None:
        """The cluster labels this step may use: None with guidance off (the labels are never
        read) or before the guidance warm-up ends."""
        if not self.cfg.guidance or self.step < self.schedule.guidance_start:
            return None
        return self.table

    def set_table(self, table: np.ndarray | torch.Tensor | None) -> None:
        """Cluster labels of the corpus (a host array: global index -> cluster, -1 noise) onto
        the run's device; their number of clusters is kept on the host, so that steps never
        read it back from the device."""
        if table is None:
            self.table, self.table_clusters = None, 0
            return
        host = torch.as_tensor(table).cpu()
        self.table = host.to(self.ctx.device)
        self.table_clusters = int(host.max()) + 1 if host.numel() else 0

    # -- state ---------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "queues": {p: q.state_dict() for p, q in self.queues.items()},
            "cluster_table": None if self.table is None else self.table.cpu(),
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                    else None},
            "pairs": self.pairs, "corpus": self.corpus,
        }

    def save(self, url: str) -> None:
        save_checkpoint(url, self.encoder, self.heads, self.cfg.to_dict(), **self.extra_state())

    def load(self, url: str) -> None:
        """Resume from a checkpoint. It is read onto the CPU: the RNG states must stay there
        (the numpy one goes through ``.numpy()``), and the weights, optimizer state, queues and
        cluster labels are copied to this run's device as they are loaded."""
        ck = load_checkpoint(url, map_location="cpu")
        if self.corpus:  # a changed corpus: its indices name other samples now
            check_resume_corpus(ck, self.corpus.get("index_hash"), url, self.cfg.shards)
        self.encoder.load_state_dict(ck["encoder"])
        self.heads.load_state_dict(ck["heads"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        for p, st in ck["queues"].items():
            self.queues[p].load_state_dict(st)
        t = ck["cluster_table"]
        self.set_table(t)
        self.step, self.epoch = int(ck["step"]), int(ck["epoch"])
        self.step_in_epoch = int(ck["step_in_epoch"])
        rng = ck["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        np.random.set_state(tuple(v.numpy() if torch.is_tensor(v) else v for v in rng["numpy"]))
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


# -- the run ---------------------------------------------------------------------------------------
def run_pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Pre-train (or resume) as configured; returns a summary (steps, last loss, paths)."""
    from tmor.shards.reader import make_loader, sample_dims

    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    ctx = init_distributed(cfg.device, timeout_s=60.0 * cfg.dist_timeout_min)
    if cfg.epoch_samples is None:
        cfg.epoch_samples = corpus_size(cfg.shards)
        if cfg.epoch_samples is None:
            raise ValueError("epoch_samples is not set and the shards have no index.parquet")
    rcfg = reader_config(cfg)
    loader = make_loader(cfg.shards, rcfg)
    probe = next(iter(loader.stream))["pose"]  # (C, T, V, M)
    dv, dt = sample_dims(loader.stream.urls, rcfg)
    pairs = usable_pairs(cfg, dv, dt)  # mv without video embeddings: dropped or refused
    if pairs != cfg.pairs():
        cfg.losses = pairs
    index_hash = corpus_index_hash(cfg.shards)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("an epoch has no full batch: lower batch_size or raise epoch_samples")
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    trainer = Trainer(cfg, ctx, probe.shape[0], probe.shape[2], probe.shape[3], dv, dt, total,
                      steps_per_epoch)
    trainer.corpus = {"index_hash": index_hash, "shards": cfg.shards}
    last = fsio.join(cfg.out_dir, "last.pt")
    resumed = cfg.resume and fsio.exists(last)
    if resumed:
        trainer.load(last)
        log.info("resumed from %s at step %d (epoch %d)", last, trainer.step, trainer.epoch)
    metrics = clusters = None
    if ctx.is_main:
        fsio.makedirs(cfg.out_dir)
        cfg.to_yaml(fsio.join(cfg.out_dir, "config.yaml"))
        step, epoch = trainer.step, trainer.epoch
        metrics = CsvLog(fsio.join(cfg.out_dir, "metrics.csv"), METRIC_FIELDS + ["guided"],
                         (lambda r: int(r["step"]) <= step) if resumed else None)
        clusters = CsvLog(fsio.join(cfg.out_dir, "clusters.csv"), CLUSTER_FIELDS + GUIDE_FIELDS,
                          (lambda r: int(r["epoch"]) < epoch) if resumed else None)
    if not trainer.pairs:  # the "none" ablation: the initial encoder is the result
        if ctx.is_main:
            trainer.save(last)
        return {"steps": 0, "checkpoint": last}

    tb = Reporters(cfg.out_dir, parse_report_to(cfg.report_to), cfg.to_dict(),
                   corpus_card_hash(cfg.shards), index_hash, cfg.wandb_project,
                   cfg.wandb_mode) if ctx.is_main else None

    done = bool(cfg.max_steps and trainer.step >= cfg.max_steps)
    row: dict[str, Any] = {}

    def log_rows() -> None:
        """The rows of the steps since the last call: one device read for all of them."""
        nonlocal row
        rows = trainer.flush_rows()
        for r in rows:
            row = r
            if metrics is not None:
                metrics.append(r)
            if tb is not None:
                for k in METRIC_FIELDS[2:]:
                    if isinstance(r.get(k), float):
                        tb.add_scalar(f"train/{k}", r[k], r["step"])
        if rows and ctx.is_main:
            log.info("step %d epoch %d loss %.4f lr %.4g %.1f samples/s", row["step"],
                     row["epoch"], row["loss"], row["lr"], row["samples_per_s"])

    def save(url: str) -> None:
        log_rows()  # the log holds every step the checkpoint holds
        if ctx.is_main:
            trainer.save(url)

    while trainer.epoch < cfg.epochs and not done:
        loader.set_epoch(trainer.epoch)
        it = iter(loader)
        for _ in range(trainer.step_in_epoch):  # the reader position of a resumed run
            if next(it, None) is None:
                break
        for batch in it:
            trainer.train_step(batch)
            if trainer.step % max(cfg.log_every, 1) == 0:
                log_rows()
            if cfg.max_steps and trainer.step >= cfg.max_steps:
                done = True
            if cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0:
                save(last)
            if done:
                break
        else:  # the epoch is complete
            log_rows()
            if cfg.cluster:
                st = recluster(trainer, cfg, ctx)
                if clusters is not None:
                    clusters.append(st)
                if tb is not None:
                    tb.add_scalar("cluster/clusters", st["clusters"], trainer.step)
                    tb.add_scalar("cluster/noise_fraction", st["noise_fraction"], trainer.step)
            trainer.epoch += 1
            trainer.step_in_epoch = 0
            save(last)
            save(fsio.join(cfg.out_dir, f"epoch_{trainer.epoch - 1:03d}.pt"))
            if ctx.is_main:
                plot_curves(cfg.out_dir)
    save(last)
    if ctx.is_main:
        plot_curves(cfg.out_dir)
    if tb is not None:
        tb.close()
    if any(loader.skipped.values()):
        log.warning("the reader skipped %s", loader.skipped)
    return {"steps": trainer.step, "epoch": trainer.epoch, "loss": row.get("loss"),
            "checkpoint": last, "resumed": resumed, "skipped": loader.skipped}
