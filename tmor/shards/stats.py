"""``tmor-data stats``: the corpus card as a table, and PNG plots into ``<root>/stats/``.

Plots: clip lengths (seconds), people per clip, keypoint-score histogram, label counts.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmor import fsio
from tmor.shards.card import read_corpus_card
from tmor.shards.codec import decode_triplet
from tmor.shards.index import shard_urls
from tmor.shards.tario import iter_tar_samples


@dataclass
class CorpusStats:
    samples: int = 0
    seconds: list[float] = field(default_factory=list)
    persons: list[int] = field(default_factory=list)
    score_hist: np.ndarray = field(default_factory=lambda: np.zeros(20, np.int64))
    labels: Counter = field(default_factory=Counter)
    layouts: Counter = field(default_factory=Counter)
    has_video: int = 0
    has_text: int = 0

    def summary(self) -> dict[str, Any]:
        secs = np.asarray(self.seconds, np.float64)
        return {
            "samples": self.samples,
            "hours": float(secs.sum() / 3600.0),
            "median_seconds": float(np.median(secs)) if secs.size else 0.0,
            "mean_persons": float(np.mean(self.persons)) if self.persons else 0.0,
            "labels": len(self.labels),
            "layouts": dict(self.layouts),
            "with_video_embedding": self.has_video,
            "with_text_embedding": self.has_text,
        }


SCORE_BINS = np.linspace(0.0, 1.0, 21)


def collect(root: str) -> CorpusStats:
    """Read every triplet of ``<root>/triplets`` once and gather the statistics."""
    st = CorpusStats()
    for url in shard_urls(fsio.join(root, "triplets")) or shard_urls(root):
        with fsio.open_url(url, "rb") as f:
            for key, members in iter_tar_samples(f, url):
                t = decode_triplet(key, members)
                st.samples += 1
                frames = t.keypoint.shape[1]
                st.seconds.append(float(t.meta.get("seconds") or frames / (t.fps or 30.0)))
                present = (t.keypoint_score > 0).any(axis=(1, 2))
                st.persons.append(int(present.sum()))
                s = t.keypoint_score[t.keypoint_score > 0]
                st.score_hist += np.histogram(np.clip(s, 0, 1), SCORE_BINS)[0]
                st.labels[t.label if t.label is not None else "(none)"] += 1
                st.layouts[t.layout] += 1
                st.has_video += t.video is not None
                st.has_text += t.text is not None
    return st


def write_plots(st: CorpusStats, out_dir: str) -> list[str]:
    """Four PNG plots; returns their URLs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fsio.makedirs(out_dir)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        url = fsio.join(out_dir, name)
        fsio.write_bytes(url, buf.getvalue())
        written.append(url)

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(st.seconds or [0.0], bins=30)
    ax.set(xlabel="clip length (s)", ylabel="clips", title="Clip lengths")
    save(fig, "clip_lengths.png")

    fig, ax = plt.subplots(figsize=(5, 3))
    counts = Counter(st.persons)
    xs = sorted(counts) or [0]
    ax.bar(xs, [counts.get(x, 0) for x in xs])
    ax.set(xlabel="people in the clip", ylabel="clips", title="People per clip")
    save(fig, "people_per_clip.png")

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(SCORE_BINS[:-1], st.score_hist, width=0.05, align="edge")
    ax.set(xlabel="keypoint score", ylabel="joints", title="Keypoint scores (visible joints)")
    save(fig, "keypoint_scores.png")

    top = st.labels.most_common(30)
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.25 * len(top) + 1)))
    ax.barh([str(n)[:40] for n, _ in top][::-1], [c for _, c in top][::-1])
    ax.set(xlabel="clips", title=f"Labels (top {len(top)} of {len(st.labels)})")
    save(fig, "labels.png")
    return written


#: card fields with one entry per shard or sample: the table shows their size, not their items
LONG_FIELDS = ("per_shard", "shard_files", "split", "index")
MAX_LIST_ITEMS = 8


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_ITEMS or any(isinstance(v, (dict, list)) for v in value):
            return f"{len(value)} entries"
        return ", ".join(str(v) for v in value) or "(none)"
    return "(none)" if value is None else str(value)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts -> (dotted.field, value) rows; long per-shard / per-sample fields as their
    size, so every value is short and whole (never a dict repr cut mid-word)."""
    if not isinstance(data, dict):
        return [(prefix, _scalar(data))]
    rows: list[tuple[str, str]] = []
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if str(k) in LONG_FIELDS and hasattr(v, "__len__") and not isinstance(v, str):
            rows.append((name, f"{len(v)} entries"))
        elif isinstance(v, dict) and v:
            rows += flatten(v, name)
        elif isinstance(v, dict):
            rows.append((name, "(none)"))
        else:
            rows.append((name, _scalar(v)))
    return rows


def card_rows(card: dict[str, Any], st: CorpusStats) -> list[tuple[str, str]]:
    """(field, value) rows of the table: the measured summary, then the card's sections, nested
    fields flattened to one row each."""
    rows = flatten(st.summary())
    for section, data in sorted(card.items()):
        rows += flatten(data, section)
    return rows


def stats(root: str, plots: bool = True) -> tuple[dict[str, Any], list[tuple[str, str]], list]:
    """Gather statistics, write plots into ``<root>/stats/``; returns (summary, rows, plots)."""
    st = collect(root)
    rows = card_rows(read_corpus_card(root), st)
    written = write_plots(st, fsio.join(root, "stats")) if plots else []
    return st.summary(), rows, written


def render_table(rows: list[tuple[str, str]], title: str) -> Any:
    """A rich Table of (field, value) rows."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for k, v in rows:
        table.add_row(k, v)
    return table
