"""Read input lists (csv / tsv / jsonl / parquet, optionally .gz, a text list, or a folder of
videos) into normalized rows: source, source_kind, start, end, label, caption, meta."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmor import fsio
from tmor.manifests.keys import sample_keys

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
    df, base_dir = _read_source(url)
    columns = [str(c) for c in df.columns]
    df.columns = columns
    picked = {ours: _pick(columns, ours, column_map) for ours in COLUMN_ALIASES}
    src_cols = [picked[c] for c in ("youtube_id", "url", "path") if picked[c]]
    if not src_cols:
        raise InputError(
            f"{url}: no source column; expected one of youtube_id / url / path (found {columns});"
            " map yours with --column url=<name>"
        )
    used = {c for c in picked.values() if c}
    source, kind = _sources(df, picked["youtube_id"], src_cols, base_dir)
    start = _times(df[picked["start"]], "start") if picked["start"] else _nan_floats(len(df))
    end = _times(df[picked["end"]], "end") if picked["end"] else _nan_floats(len(df))
    out = pd.DataFrame({
        "key": sample_keys(source, start.tolist(), end.tolist()),
        "source": source,
        "source_kind": kind,
        "start": start,
        "end": end,
        "label": _optional_text(df, picked["label"]),
        "caption": _optional_text(df, picked["caption"]),
        "meta": _meta(df, [c for c in columns if c not in used]),
    }, columns=NORMALIZED_COLUMNS)
    dup_mask = out.duplicated("key")
    report = {
        "rows": len(out),
        "duplicates": int(dup_mask.sum()),
        "duplicate_examples": out.loc[dup_mask, "source"].head(3).tolist(),
    }
    if report["duplicates"]:
        out = out.loc[~dup_mask].reset_index(drop=True)
    return out, report


def _read_source(url: str) -> tuple[pd.DataFrame, str | None]:
    """The raw table of an input list or folder, and the folder relative paths resolve against."""
    fs, path = fsio.filesystem(url)
    if fsio.is_local(fs) and os.path.isdir(path):
        return _folder_rows(Path(path)), path
    if not fs.exists(path):
        raise InputError(f"{url}: no such input list or folder")
    base_dir = os.path.dirname(os.path.abspath(path)) if fsio.is_local(fs) else None
    return _read_table(url), base_dir


def _texts(col: pd.Series) -> pd.Series:
    """Each value as stripped text (object dtype); missing or blank values -> None."""
    if pd.api.types.is_string_dtype(col.dtype) and col.dtype != object:
        # strings held by pandas / arrow: strip there, without a Python object per cell first
        out = col.str.strip().to_numpy(dtype=object, na_value=None)
        out[out == ""] = None
        return pd.Series(out, index=col.index, dtype=object)
    values = col.astype(object).to_numpy()
    out = np.full(len(values), None, dtype=object)
    present = ~pd.isna(values)
    if present.any():
        stripped = pd.Series(values[present]).astype(str).str.strip().to_numpy(dtype=object)
        idx = np.flatnonzero(present)
        keep = stripped != ""
        out[idx[keep]] = stripped[keep]
    return pd.Series(out, index=col.index, dtype=object)


def _nan_floats(n: int) -> pd.Series:
    return pd.Series(np.full(n, np.nan), dtype="float64")


def _times(col: pd.Series, what: str) -> pd.Series:
    """Seconds as float64 (NaN when missing); a value that is not a number is an InputError."""
    text = _texts(col)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    for i in np.flatnonzero((text.notna() & values.isna()).to_numpy()):
        values.iloc[i] = _time(text.iloc[i], what, int(i))  # 'nan', 'inf' or an error
    return values.reset_index(drop=True).astype("float64")


def _optional_text(df: pd.DataFrame, column: str | None) -> pd.Series:
    return _texts(df[column]).reset_index(drop=True) if column else pd.Series(
        [None] * len(df), dtype=object)


def _sources(
    df: pd.DataFrame, youtube_col: str | None, src_cols: list[str], base_dir: str | None
) -> tuple[list[str], list[str]]:
    """(source, source_kind) of every row: a youtube id wins, else the first non-empty column."""
    n = len(df)
    texts = {c: _texts(df[c]).tolist() for c in src_cols}
    youtube = texts[youtube_col] if youtube_col else [None] * n
    source: list[str] = [""] * n
    kind: list[str] = [""] * n
    for i in range(n):
        yt = youtube[i]
        if yt is not None:
            source[i], kind[i] = "https://www.youtube.com/watch?v=" + yt, "youtube"
            continue
        value = next((texts[c][i] for c in src_cols if texts[c][i] is not None), None)
        if value is None:
            raise InputError(f"row {i}: empty source ({', '.join(src_cols)})")
        source[i], kind[i] = classify_source(value, base_dir)
    return source, kind


def _meta(df: pd.DataFrame, extra: list[str]) -> list[str]:
    """Per row, the JSON of the other columns' non-blank values (keys sorted)."""
    if not extra:
        return ["{}"] * len(df)
    parts = []
    for name in sorted(extra):
        col = df[name]
        prefix = json.dumps(name) + ": "
        blank = _texts(col).isna().to_numpy()
        try:
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
        except TypeError:  # unhashable values (lists in a jsonl list): one by one
            values = col.astype(object).tolist()
            parts.append([None if b else prefix + json.dumps(v, default=str)
                          for v, b in zip(values, blank, strict=True)])
            continue
        encoded = [prefix + json.dumps(v, default=str) for v in pd.Series(uniques).tolist()]
        parts.append([None if b or c < 0 else encoded[c]
                      for c, b in zip(codes, blank, strict=True)])
    rows = zip(*parts, strict=True)
    return ["{" + ", ".join(p for p in row if p is not None) + "}" for row in rows]


def input_fingerprint(url: str, column_map: Mapping[str, str] | None = None) -> str:
    """A digest that changes when the input list (or folder) or the column mapping changes:
    sha256 of a local file's bytes, of a folder's video names, sizes and times, or of a remote
    object's size and etag / modification time."""
    h = hashlib.sha256(json.dumps(sorted((column_map or {}).items())).encode())
    fs, path = fsio.filesystem(url)
    if fsio.is_local(fs) and os.path.isdir(path):
        for p in sorted(Path(path).rglob("*")):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                st = p.stat()
                h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    if not fs.exists(path):
        raise InputError(f"{url}: no such input list or folder")
    if fsio.is_local(fs):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    info = fs.info(path)
    keys = ("size", "ETag", "etag", "md5Hash", "crc32c", "mtime", "LastModified", "updated")
    h.update(json.dumps({k: str(info[k]) for k in keys if k in info}, sort_keys=True).encode())
    return h.hexdigest()
