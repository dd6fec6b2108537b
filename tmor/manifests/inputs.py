"""Read input lists (csv / tsv / jsonl / parquet, optionally .gz, a text list, or a folder of
videos) into normalized rows: source, source_kind, start, end, label, caption, meta."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tmor import fsio
from tmor.manifests.keys import sample_key

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
)

#: our column -> accepted input column names, in order of preference
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "youtube_id": ("youtube_id", "ytid", "yt_id", "video_id"),
    "url": ("url", "video_url", "link", "source"),
    "path": ("path", "video_path", "file", "filename", "video"),
    "start": ("start", "time_start", "start_time", "start_sec", "t_start"),
    "end": ("end", "time_end", "end_time", "end_sec", "t_end"),
    "label": ("label", "classname", "class", "action"),
    "caption": ("caption", "text"),
}
NORMALIZED_COLUMNS = ["key", "source", "source_kind", "start", "end", "label", "caption", "meta"]


class InputError(ValueError):
    """An input list that cannot be read or understood; the message says what to change."""


def _read_table(url: str) -> pd.DataFrame:
    name = url[:-3] if url.endswith(".gz") else url
    compression = "gzip" if url.endswith(".gz") else None
    with fsio.open_url(url, "rb") as f:
        if name.endswith(".csv"):
            return pd.read_csv(f, compression=compression, dtype=str, keep_default_na=False)
        if name.endswith(".tsv"):
            return pd.read_csv(
                f, sep="\t", compression=compression, dtype=str, keep_default_na=False
            )
        if name.endswith((".jsonl", ".ndjson")):
            return pd.read_json(f, lines=True, compression=compression, dtype=False)
        if name.endswith(".parquet"):
            return pd.read_parquet(f)
        if name.endswith(".txt"):
            text = f.read()
            if compression:
                import gzip

                text = gzip.decompress(text)
            lines = [ln.strip() for ln in text.decode().splitlines()]
            return pd.DataFrame({"url": [ln for ln in lines if ln and not ln.startswith("#")]})
    raise InputError(
        f"{url}: unknown input format; use .csv, .tsv, .jsonl, .parquet or .txt (optionally .gz),"
        " or a folder of videos"
    )


def _folder_rows(folder: Path) -> pd.DataFrame:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not files:
        raise InputError(f"{folder}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
    return pd.DataFrame({"path": [str(p.resolve()) for p in files]})


def _pick(columns: list[str], ours: str, mapping: Mapping[str, str]) -> str | None:
    if ours in mapping:
        if mapping[ours] not in columns:
            raise InputError(f"column mapping {ours}={mapping[ours]}: no such column in {columns}")
        return mapping[ours]
    lower = {c.lower(): c for c in columns}
    for alias in COLUMN_ALIASES[ours]:
        if alias in lower:
            return lower[alias]
    return None


def _time(value: Any, what: str, row_no: int) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise InputError(f"row {row_no}: {what}={value!r} is not a number of seconds") from None
    return None if math.isnan(t) else t


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip()
    return s or None


def classify_source(value: str, base_dir: str | None) -> tuple[str, str]:
    """(source, source_kind) of a url or path; relative paths resolve against ``base_dir``."""
    v = value.strip()
    low = v.lower()
    if low.startswith(("http://", "https://")):
        host = low.split("/", 3)[2]
        kind = "youtube" if host.endswith(("youtube.com", "youtu.be")) else "url"
        return v, kind
    if low.startswith("file://"):
        v = v[len("file://") :]
    if "://" in v:
        return v, "url"  # s3://, gs://, ... are fetched as remote files
    p = Path(v)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return str(p.resolve()), "local"


def read_inputs(
    url: str, column_map: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalized input rows (columns :data:`NORMALIZED_COLUMNS`) and a report.

    Recognized: Kinetics / HACS style (youtube_id, time_start, time_end, label), generic (url or
    path, start, end, caption, label; other columns kept as ``meta``), a .txt list of urls or
    paths, or a folder of videos. ``column_map`` maps our names (youtube_id, url, path, start, end,
    label, caption) to the list's own column names. Duplicate keys are kept once and counted.
    """
    column_map = dict(column_map or {})
    unknown = set(column_map) - set(COLUMN_ALIASES)
    if unknown:
        raise InputError(
            f"unknown column mapping target(s) {sorted(unknown)}; use {list(COLUMN_ALIASES)}"
        )
    fs, path = fsio.filesystem(url)
    base_dir: str | None
    if fsio.is_local(fs) and os.path.isdir(path):
        df, base_dir = _folder_rows(Path(path)), path
    else:
        if not fs.exists(path):
            raise InputError(f"{url}: no such input list or folder")
        df = _read_table(url)
        base_dir = os.path.dirname(os.path.abspath(path)) if fsio.is_local(fs) else None
    columns = [str(c) for c in df.columns]
    picked = {ours: _pick(columns, ours, column_map) for ours in COLUMN_ALIASES}
    src_cols = [picked[c] for c in ("youtube_id", "url", "path") if picked[c]]
    if not src_cols:
        raise InputError(
            f"{url}: no source column; expected one of youtube_id / url / path (found {columns});"
            " map yours with --column url=<name>"
        )
    used = {c for c in picked.values() if c}
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        if picked["youtube_id"] and _text(rec[picked["youtube_id"]]):
            source = f"https://www.youtube.com/watch?v={_text(rec[picked['youtube_id']])}"
            kind = "youtube"
        else:
            value = next((_text(rec[c]) for c in src_cols if _text(rec[c])), None)
            if value is None:
                raise InputError(f"row {i}: empty source ({', '.join(src_cols)})")
            source, kind = classify_source(value, base_dir)
        start = _time(rec[picked["start"]], "start", i) if picked["start"] else None
        end = _time(rec[picked["end"]], "end", i) if picked["end"] else None
        meta = {k: rec[k] for k in columns if k not in used and _text(rec[k]) is not None}
        rows.append(
            {
                "key": sample_key(source, start, end),
                "source": source,
                "source_kind": kind,
                "start": start,
                "end": end,
                "label": _text(rec[picked["label"]]) if picked["label"] else None,
                "caption": _text(rec[picked["caption"]]) if picked["caption"] else None,
                "meta": json.dumps(meta, default=str, sort_keys=True),
            }
        )
    out = pd.DataFrame(rows, columns=NORMALIZED_COLUMNS)
    dup_mask = out.duplicated("key")
    report = {
        "rows": len(out),
        "duplicates": int(dup_mask.sum()),
        "duplicate_examples": out.loc[dup_mask, "source"].head(3).tolist(),
    }
    out = out.loc[~dup_mask].reset_index(drop=True)
    out["start"] = out["start"].astype("float64")
    out["end"] = out["end"].astype("float64")
    return out, report
