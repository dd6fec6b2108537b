"""What a pre-training run leaves to look at: metrics.csv and clusters.csv (resume-safe), loss
and cluster plots (losses.png, clusters.png) and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import logging
import os
from typing import Any

from tmor import fsio

METRIC_FIELDS = ["step", "epoch", "lr", "loss", "loss_mm", "loss_mv", "loss_mt", "pos_mm",
                 "pos_mv", "pos_mt", "samples_per_s"]
CLUSTER_FIELDS = ["epoch", "step", "samples", "clusters", "noise_fraction", "core", "seconds"]


class CsvLog:
    """Append-only CSV; on resume only the rows ``keep`` accepts (those the checkpoint covers)
    are kept, so a resumed run's log equals an uninterrupted one's."""

    def __init__(self, url: str, fields: list[str], keep=None) -> None:
        self.url, self.fields = url, fields
        rows = read_csv(url) if fsio.exists(url) and keep is not None else []
        self.rows = [r for r in rows if keep(r)] if keep is not None else []
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        fsio.write_bytes(self.url, buf.getvalue().encode())

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: row.get(k, "") for k in self.fields})
        if fsio.is_local(fsio.filesystem(self.url)[0]):
            with open(fsio.filesystem(self.url)[1], "a", newline="") as f:
                csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        else:
            self._rewrite()


def read_csv(url: str) -> list[dict[str, str]]:
    """Rows of a metrics CSV; a torn last line (a crash mid-write) is dropped."""
    text = fsio.read_bytes(url).decode(errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and (None in rows[-1].values() or not text.endswith("\n")):
        rows = rows[:-1]
    return rows


def plot_curves(out_dir: str) -> None:
    """losses.png (loss per pair vs step) and clusters.png (clusters, noise per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m_url, c_url = fsio.join(out_dir, "metrics.csv"), fsio.join(out_dir, "clusters.csv")
    if fsio.exists(m_url):
        rows = read_csv(m_url)
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in ("loss", "loss_mm", "loss_mv", "loss_mt"):
            pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k) not in ("", None)]
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], label=k)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        _save_fig(fig, fsio.join(out_dir, "losses.png"))
        plt.close(fig)
    if fsio.exists(c_url):
        rows = read_csv(c_url)
        if rows:
            fig, ax = plt.subplots(figsize=(6, 4))
            ep = [int(r["epoch"]) for r in rows]
            ax.plot(ep, [int(r["clusters"]) for r in rows], "o-", label="clusters")
            ax.set_xlabel("epoch")
            ax.set_ylabel("clusters")
            ax2 = ax.twinx()
            ax2.plot(ep, [float(r["noise_fraction"]) for r in rows], "s--", color="C1",
                     label="noise fraction")
            ax2.set_ylabel("noise fraction")
            _save_fig(fig, fsio.join(out_dir, "clusters.png"))
            plt.close(fig)


def _save_fig(fig, url: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    fsio.write_bytes(url, buf.getvalue())


def tensorboard(out_dir: str):
    """A TensorBoard writer in ``<out_dir>/tb`` when tensorboard is installed (local dirs)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    fs, path = fsio.filesystem(out_dir)
    return SummaryWriter(os.path.join(path, "tb")) if fsio.is_local(fs) else None


# -- --report-to: csv (always), tensorboard, wandb ----------------------------------------------
REPORTERS = ("csv", "tensorboard", "wandb")


def parse_report_to(spec: str | list[str] | None) -> list[str]:
    """'csv,tensorboard,wandb' -> the list (csv is always on: it is the resume-safe record the
    plots read); raises ValueError on an unknown name."""
    items = spec if isinstance(spec, list) else str(spec or "").replace("+", ",").split(",")
    names = [s.strip().lower() for s in items if s and s.strip()]
    bad = [n for n in names if n not in REPORTERS]
    if bad:
        raise ValueError(f"unknown --report-to {bad}: choose from {', '.join(REPORTERS)}")
    return ["csv"] + [n for n in REPORTERS[1:] if n in names]


def corpus_card_hash(shards: str) -> str | None:
    """sha256 of the corpus card (``corpus.json``) of the corpus whose shards these are: in the
    shard folder or the folder above it (None when there is none)."""
    import hashlib

    from tmor.shards.reader import expand_urls, index_location

    folder = index_location(expand_urls(shards)[0])
    if not folder:
        return None
    for where in (folder, folder.rsplit("/", 1)[0] if "/" in folder else None):
        url = fsio.join(where, "corpus.json") if where else None
        if url and fsio.exists(url):
            return hashlib.sha256(fsio.read_bytes(url)).hexdigest()
    return None


class Reporters:
    """The run's scalars to TensorBoard and / or Weights & Biases (metrics.csv is written by
    :class:`CsvLog`). Each log starts with the run's identity: the config and the corpus card
    hash (TensorBoard text ``run/config``, wandb ``config``, ``run.json`` beside the CSVs).

    ``add_scalar(tag, value, step)`` fans out, so the trainer logs as it did to TensorBoard.
    wandb is optional (``pip install 'tmor[wandb]'``); its mode comes from ``wandb_mode``
    (default offline: the run is written under ``<out_dir>/wandb`` and synced later with
    ``wandb sync``)."""

    def __init__(self, out_dir: str, report_to: list[str], config: dict[str, Any],
                 card_hash: str | None, index_hash: str | None = None,
                 wandb_project: str = "tmor", wandb_mode: str = "offline",
                 run_name: str | None = None) -> None:
        import hashlib
        import json

        self.identity = {"config": config, "corpus_card_sha256": card_hash,
                         "corpus_index_hash": index_hash, "report_to": report_to}
        blob = json.dumps(self.identity, sort_keys=True, default=str).encode()
        self.run_id = hashlib.sha256(blob).hexdigest()[:12]
        self.identity["run_id"] = self.run_id
        fsio.write_bytes(fsio.join(out_dir, "run.json"),
                         json.dumps(self.identity, indent=1, default=str).encode())
        self.tb = tensorboard(out_dir) if "tensorboard" in report_to else None
        if "tensorboard" in report_to and self.tb is None:
            logging.getLogger(__name__).warning(
                "--report-to tensorboard: tensorboard is not installed (or %s is not local); "
                "metrics.csv only", out_dir)
        if self.tb is not None:
            self.tb.add_text("run/config", "```\n" + json.dumps(self.identity, indent=1,
                                                               default=str) + "\n```")
            self.tb.add_text("run/corpus_card_sha256", str(card_hash))
        self.wandb = None
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("--report-to wandb needs wandb: pip install 'tmor[wandb]'") \
                    from e
            fs, path = fsio.filesystem(out_dir)
            self.wandb = wandb.init(
                project=wandb_project, name=run_name or os.path.basename(path.rstrip("/")),
                id=self.run_id, resume="allow", mode=wandb_mode,
                dir=path if fsio.is_local(fs) else None,
                config={**config, "corpus_card_sha256": card_hash,
                        "corpus_index_hash": index_hash})

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log({tag: value}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
