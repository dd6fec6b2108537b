"""The pre-training configuration: one dataclass, every field also a YAML key and a CLI option."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tmor.config import ConfigError, known_layout, rules, torch_device

STAGE_LOSSES = {1: ["mm", "mv"], 2: ["mt"]}
#: the sections of a transfer config file (``--config`` of linear-probe, finetune, detect and
#: zero-shot) and their config classes
TRANSFER_SECTIONS = {
    "finetune": "tmor.train.classify:ClassifyConfig",
    "linear_probe": "tmor.train.classify:ClassifyConfig",
    "detect": "tmor.train.detect:DetectConfig",
    "zero_shot": "tmor.train.zeroshot:ZeroShotConfig",
}
#: fields whose command-line option has another name
PRETRAIN_FLAGS = {"out_dir": "--out", "num_workers": "--loader-workers"}


def report_targets(spec: str) -> str | None:
    """Config rule of ``report_to``: a comma list of known reporters."""
    from tmor.train.runlog import parse_report_to

    try:
        parse_report_to(spec)
    except ValueError:
        from tmor.train.runlog import REPORTERS

        return f"must be a comma list of {', '.join(REPORTERS)}"
    return None


@rules(frames=">= 1", layout=known_layout, channels="2 | 3", max_persons=">= 1",
       batch_size=">= 1", num_workers=">= 0", shuffle_buffer=">= 0", epoch_samples=">= 1",
       stage="1 | 2", losses="mm | mv | mt | none", base_channels=">= 1", num_heads=">= 1",
       proj_dim=">= 1", hidden_dim=">= 1", epochs=">= 1", max_steps=">= 1",
       optimizer="sgd | adamw", lr="> 0", momentum="[0, 1)", weight_decay=">= 0",
       warmup_steps=">= 0", min_lr_ratio="[0, 1]", grad_clip=">= 0", amp="bf16 | fp16 | none",
       temperature="> 0", queue_size=">= 1", min_crop="(0, 1]", max_rotation="[0, 180]",
       max_shear=">= 0", eps="(0, 2]", min_samples=">= 1",
       cluster_backend="auto | pruned | brute | torch | faiss", embed_batch_size=">= 1",
       warmup_frac="[0, 1)", guidance_warmup_steps=">= 0", guidance_warmup_epochs=">= 0",
       guidance_warmup_frac="[0, 1]", max_cluster_fraction="(0, 1]",
       collapse_eps_quantiles="(0, 1]", kdist_sample=">= 1", dist_timeout_min="> 0",
       ckpt_every=">= 0", log_every=">= 1", seed=">= 0", device=torch_device,
       report_to=report_targets, wandb_mode="offline | online | disabled")
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
    collapse_eps_quantiles: list[float] = field(     # then eps := the largest of these
        default_factory=lambda: [0.5, 0.4, 0.3, 0.2, 0.1])  # k-distance quantiles within it
    center_embeddings: bool = True      # DBSCAN on embeddings centred on their mean
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

    def check(self) -> None:
        """Rules between fields (each field's own are in the table above)."""
        if "none" in self.losses and len(self.losses) > 1:
            raise ConfigError(f"--losses none goes alone, got {'+'.join(self.losses)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_yaml(cls, url: str, **overrides: Any) -> PretrainConfig:
        """Fields from a flat YAML file (checked whole); ``overrides`` (not None) win."""
        from tmor.config import build, read_flat_config

        return build(cls, read_flat_config(url, cls), overrides, flags=PRETRAIN_FLAGS)

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
