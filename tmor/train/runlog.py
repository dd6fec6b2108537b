"""What a pre-training run leaves to look at: metrics.csv and clusters.csv (resume-safe), loss
and cluster plots (losses.png, clusters.png) and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
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
