"""The pre-training configuration: one dataclass, every field also a YAML key and a CLI option."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STAGE_LOSSES = {1: ["mm", "mv"], 2: ["mt"]}


@dataclass
class PretrainConfig:
    # data
    shards: str = ""                    # brace pattern / list / folder of triplet shards
    out_dir: str = "runs/pretrain"
    frames: int = 64                    # T
    layout: str | None = "coco17"       # joint layout the reader converts to; None keeps it
    channels: int = 2                   # 2: x, y; 3: 3D (or x, y, score)
    max_persons: int = 2                # M
    batch_size: int = 64                # per rank
    num_workers: int = 2
    shuffle_buffer: int = 1000
    epoch_samples: int | None = None    # samples per epoch over all ranks; None: corpus size
    # stage and losses
    stage: int = 1
    losses: list[str] = field(default_factory=list)  # subset of mm, mv, mt; empty: the stage's
    init: str | None = None             # checkpoint to start from (stage 2: the stage-1 run)
    # model
    base_channels: int = 64             # 64: the reference UNIK
    num_heads: int = 3
    proj_dim: int = 256
    hidden_dim: int = 512
    # optimization
    epochs: int = 10
    max_steps: int | None = None        # stop after this many steps in all (smoke runs)
    optimizer: str = "sgd"              # sgd (nesterov) | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_steps: int | None = None     # LR warm-up steps; None: warmup_frac of the run
    min_lr_ratio: float = 0.0           # cosine floor as a fraction of lr
    grad_clip: float = 1.0              # max gradient norm; 0: off
    amp: str = "bf16"                   # CUDA only: bf16 | fp16 | none
    # contrastive
    temperature: float = 0.07
    queue_size: int = 16384
    min_crop: float = 0.5
    max_rotation: float = 30.0          # degrees (3D)
    max_shear: float = 0.3              # (2D)
    # clustering after each epoch
    cluster: bool = True                # embed + DBSCAN the corpus after each epoch
    guidance: bool = True               # same-cluster samples are positives; False: plain
                                        # instance discrimination (clusters still logged)
    eps: float = 0.1                    # cosine distance
    min_samples: int = 10
    cluster_backend: str = "auto"       # auto | pruned (CPU) | torch (GPU) | faiss (CPU tiles)
    embed_batch_size: int = 256
    # schedule and cluster guidance that cannot collapse (tmor/train/guidance.py)
    warmup_frac: float = 0.05           # LR warm-up as a fraction of the run's steps
    guidance_warmup_steps: int | None = None    # plain instance discrimination until this step
    guidance_warmup_epochs: float | None = None  # ... or for this many epochs
    guidance_warmup_frac: float = 0.2   # ... or (neither set) for this fraction of the run
    max_cluster_fraction: float = 0.25  # a clustering / a step's candidates with a larger
                                        # largest cluster is not used as is
    collapse_eps_quantile: float = 0.5  # then eps := this quantile of the k-distances, retried
    kdist_sample: int = 4096            # samples whose k-distance sets that quantile
    dist_timeout_min: float = 120.0     # process-group timeout; covers embedding + clustering
    # checkpoints, logging, reproducibility
    ckpt_every: int = 1000              # steps; 0: only at the end of each epoch
    log_every: int = 10                 # steps per log line and metrics.csv write: the steps'
                                        # statistics come off the device once per interval
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    resume: bool = True                 # continue from <out_dir>/last.pt when present
    # run logging (issue 13): metrics.csv always; also tensorboard and / or wandb
    report_to: str = "csv,tensorboard"  # comma list of csv, tensorboard, wandb
    wandb_project: str = "tmor"
    wandb_mode: str = "offline"         # offline (sync later with `wandb sync`) | online | disabled

    def pairs(self) -> list[str]:
        """The loss terms this run uses."""
        chosen = list(self.losses) or STAGE_LOSSES[self.stage]
        if chosen == ["none"]:  # ablation: no pre-training, the initial encoder is saved
            return []
        bad = [p for p in chosen if p not in ("mm", "mv", "mt")]
        if bad:
            raise ValueError(f"unknown losses {bad}: choose from mm, mv, mt")
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_yaml(cls, url: str, **overrides: Any) -> PretrainConfig:
        """Fields from a flat YAML file; ``overrides`` (not None) win."""
        import yaml

        from tmor import fsio
        from tmor.config import build

        return build(cls, yaml.safe_load(fsio.read_bytes(url)) or {}, overrides)

    def to_yaml(self, url: str) -> None:
        import yaml

        from tmor import fsio

        fsio.write_bytes(url, yaml.safe_dump(self.to_dict(), sort_keys=False).encode())


def parse_losses(spec: str | None) -> list[str]:
    """'M+V+T' / 'mm,mv' / 'none' -> pair names (M = mm, V = mv, T = mt)."""
    if spec is None or spec == "":
        return []
    if spec.lower() == "none":
        return ["none"]
    alias = {"m": "mm", "v": "mv", "t": "mt"}
    parts = [p.strip().lower() for p in spec.replace("+", ",").split(",") if p.strip()]
    return [alias.get(p, p) for p in parts]
