"""Ingest raw CSV or Parquet exports into a hive-partitioned Parquet dataset.

Every row read is either written, typed by the dataset's schema, or quarantined with its
source file, line number and reason; `_manifest.json` accounts for all of them, per file and
per reason. Files are ingested in parallel as Ray tasks, each streaming its file in blocks,
into a staging directory that is published only once every file has been written: a failed
ingest leaves nothing half-written at the output.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import logging
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from iids.datasets import DatasetAdapter, Kind, parse_numbers
from iids.storage import Storage, is_s3, join

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
NONFINITE_POLICIES = ("quarantine", "impute")
QUARANTINE_DIR = "_quarantine"
PARTITION_COLUMN = "source"
KEY_COLUMNS = ("source_file", "source_line")

_DATA_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".parquet")
_BLOCK_BYTES = 16 << 20
_IP_OR_HOST = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[A-Za-z][\w-]*(\.[\w-]+)+)$")

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
    ]
)


class IngestError(ValueError):
    """A file cannot be ingested at all; the message names the file and what to do."""


@dataclass
class FileResult:
    """What ingesting one file did."""

    file: str
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    quarantined_by_reason: Counter = field(default_factory=Counter)
    cells_imputed: Counter = field(default_factory=Counter)  # per column
    ranges: dict[str, list[float]] = field(default_factory=dict)  # column: [min, max]
    skipped: str | None = None  # why the file was skipped, when it was

    def as_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_quarantined": self.rows_quarantined,
            "quarantined_by_reason": dict(self.quarantined_by_reason),
        }
        if self.cells_imputed:
            out["cells_imputed"] = dict(self.cells_imputed)
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def ingest(
    adapter: DatasetAdapter,
    inputs: list[str],
    output_uri: str,
    *,
    storage: Storage | None = None,
    nonfinite: str = "quarantine",
    day: str | None = None,
) -> dict[str, Any]:
    """Ingest raw files into `output_uri` and return its manifest.

    Args:
        adapter: the dataset's schema and parsing rules.
        inputs: files, directories (searched recursively) or glob patterns, local or S3.
        output_uri: the dataset's directory; replaced when the ingest succeeds.
        storage: where `inputs` and `output_uri` live.
        nonfinite: what to do with NaN or infinity in a numeric column: `quarantine`
            the row, or `impute` 0.0 and count it in the manifest (`cells_imputed`).
        day: `YYYY-MM-DD`: write into (and replace only) the `day=YYYY-MM-DD`
            partition of `output_uri`, as nightly log exports are stored.

    Returns:
        The manifest, also written to `output_uri/_manifest.json`.

    Raises:
        IngestError: a path matches no file, a file lacks required columns, or a
            column is text in one Parquet file and numeric in another.
    """
    import ray

    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(
            f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}"
        )
    storage = storage or Storage()
    if day is not None:
        output_uri = join(output_uri, f"day={parse_day(day)}")
    files = expand_inputs(inputs, storage)
    check_parquet_types(files, adapter, storage)
    logger.info("ingesting %d file(s) into %s", len(files), output_uri)

    # Write every file into a staging directory beside the output.
    staging = f"{output_uri.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"
    names = _partition_names(files)
    task = ray.remote(num_cpus=1)(_ingest_file)
    try:
        refs = [
            task.remote(adapter, path, names[path], staging, storage, nonfinite)
            for path in files
        ]
        results: list[FileResult] = ray.get(refs)
    except BaseException:
        storage.delete_dir(staging)
        raise

    # Account for every row, then publish.
    manifest = _manifest(adapter, results, output_uri)
    storage.write_json(join(staging, MANIFEST), manifest)
    storage.move_dir(staging, output_uri)
    logger.info(
        "ingest done: %d rows read, %d written, %d quarantined %s",
        manifest["rows_read"],
        manifest["rows_written"],
        manifest["rows_quarantined"],
        manifest["quarantined_by_reason"] or "",
    )
    return manifest


def parse_day(day: str) -> str:
    """Check a `YYYY-MM-DD` day and return it.

    Raises:
        ValueError: not a calendar day in that form.
    """
    # fromisoformat alone would also take 20261202 or 2026-W49-3.
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise ValueError
        return dt.date.fromisoformat(day).isoformat()
    except ValueError:
        raise ValueError(
            f"day must be a date written YYYY-MM-DD, got {day!r}"
        ) from None


def expand_inputs(inputs: list[str], storage: Storage) -> list[str]:
    """Files named by paths, directories and glob patterns, in a stable order.

    Raises:
        IngestError: an input matches no data file.
    """
    files: list[str] = []
    for pattern in inputs:
        fs, path = storage.filesystem(pattern)
        prefix = "s3://" if is_s3(pattern) else ""
        if any(ch in path for ch in "*?["):
            base = path[: min(path.find(ch) for ch in "*?[" if ch in path)]
            base = base.rsplit("/", 1)[0]
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
            found = [i.path for i in infos if fnmatch.fnmatch(i.path, path)]
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                selector = pafs.FileSelector(path, recursive=True)
                found = [i.path for i in fs.get_file_info(selector)]
            elif info.type == pafs.FileType.File:
                found = [path]
            else:
                raise IngestError(
                    f"{pattern}: no such file or directory. Check the path; CSV "
                    f"(.csv, .csv.gz) and Parquet files and folders of them are accepted."
                )
        data = sorted(prefix + p for p in found if _is_data_file(p))
        if not data:
            raise IngestError(
                f"{pattern}: matches no data file (looked for {', '.join(_DATA_SUFFIXES)}; "
                f"marker files such as _SUCCESS are ignored)"
            )
        files.extend(f for f in data if f not in files)
    return files


def _is_data_file(path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith(("_", ".")):
        return False
    return name.lower().endswith(_DATA_SUFFIXES)


def _partition_names(files: list[str]) -> dict[str, str]:
    """A partition value per file: its name without suffixes, made unique."""
    names: dict[str, str] = {}
    seen: Counter = Counter()
    for path in files:
        stem = os.path.basename(path)
        for suffix in (".gz", ".bz2", ".csv", ".parquet"):
            stem = stem.removesuffix(suffix)
        stem = re.sub(r"[^\w.-]", "_", stem)
        seen[stem] += 1
        names[path] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return names


def _manifest(
    adapter: DatasetAdapter, results: list[FileResult], output_uri: str
) -> dict[str, Any]:
    by_reason: Counter = Counter()
    imputed: Counter = Counter()
    ranges: dict[str, list[float]] = {}
    for r in results:
        by_reason.update(r.quarantined_by_reason)
        imputed.update(r.cells_imputed)
        for col, (lo, hi) in r.ranges.items():
            old = ranges.get(col, [lo, hi])
            ranges[col] = [min(old[0], lo), max(old[1], hi)]
    constant = sorted(col for col, (lo, hi) in ranges.items() if lo == hi)
    if constant:
        logger.warning(
            "constant numeric columns (one value in every row): %s", constant
        )
    manifest = {
        "dataset": adapter.name,
        "output": output_uri,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows_read": sum(r.rows_read for r in results),
        "rows_written": sum(r.rows_written for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "quarantined_by_reason": dict(by_reason),
        "cells_imputed": dict(imputed),
        "constant_columns": constant,
        "partition_column": PARTITION_COLUMN,
        "files": [r.as_dict() for r in results],
    }
    assert (
        manifest["rows_read"] == manifest["rows_written"] + manifest["rows_quarantined"]
    ), "ingest lost rows"
    return manifest


# -- one file -------------------------------------------------------------------------


def _ingest_file(
    adapter: DatasetAdapter,
    path: str,
    partition: str,
    staging: str,
    storage: Storage,
    nonfinite: str = "quarantine",
) -> FileResult:
    """Stream one raw file into its partition; runs as a Ray task."""
    logging.basicConfig(level=logging.INFO)
    result = FileResult(file=path)
    fs, fs_path = storage.filesystem(path)
    out_dir = join(staging, f"{PARTITION_COLUMN}={partition}")
    bad_dir = join(staging, QUARANTINE_DIR, f"{PARTITION_COLUMN}={partition}")
    writers = _Writers(storage, out_dir, bad_dir, adapter)
    try:
        batches = (
            _parquet_batches(fs, fs_path, path, adapter)
            if path.lower().endswith(".parquet")
            else _csv_batches(fs, fs_path, path, adapter)
        )
        for raw, lines, faults in batches:
            result.rows_read += raw.num_rows + len(faults)
            writers.quarantine(faults)
            for fault in faults:
                result.quarantined_by_reason[fault["reason"]] += 1
            typed, bad = _type_batch(adapter, raw, lines, path, nonfinite, result)
            writers.quarantine(bad)
            for row in bad:
                result.quarantined_by_reason[row["reason"]] += 1
            writers.write(typed)
            result.rows_written += typed.num_rows
            _update_ranges(result.ranges, typed, adapter)
    except _EmptyFile as empty:
        result.skipped = str(empty)
        logger.warning("%s: %s; skipped", path, empty)
    finally:
        writers.close()
    result.rows_quarantined = sum(result.quarantined_by_reason.values())
    return result


class _EmptyFile(Exception):
    """The file holds no rows."""


class _Writers:
    """Parquet writers for one file's good rows and quarantined rows, opened lazily."""

    def __init__(self, storage: Storage, out_dir: str, bad_dir: str, adapter):
        self.storage = storage
        self.out_dir, self.bad_dir = out_dir, bad_dir
        self.schema = adapter.arrow_schema()
        for name in KEY_COLUMNS:
            self.schema = self.schema.append(
                pa.field(name, pa.string() if name == "source_file" else pa.int64())
            )
        self.good: pq.ParquetWriter | None = None
        self.bad: pq.ParquetWriter | None = None

    def _open(self, directory: str, schema: pa.Schema) -> pq.ParquetWriter:
        fs, path = self.storage.filesystem(directory)
        fs.create_dir(path, recursive=True)
        return pq.ParquetWriter(f"{path}/part-0000.parquet", schema, filesystem=fs)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.good is None:
            self.good = self._open(self.out_dir, self.schema)
        self.good.write_table(table.select(self.schema.names).cast(self.schema))

    def quarantine(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.bad is None:
            self.bad = self._open(self.bad_dir, QUARANTINE_SCHEMA)
        self.bad.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA))

    def close(self) -> None:
        for writer in (self.good, self.bad):
            if writer is not None:
                writer.close()


def _read_header(fs: pafs.FileSystem, fs_path: str, path: str) -> list[str]:
    """The header's column names, with a byte-order mark and surrounding spaces removed."""
    compression = "gzip" if path.endswith(".gz") else None
    compression = "bz2" if path.endswith(".bz2") else compression
    with fs.open_input_stream(fs_path, compression=compression) as stream:
        first = stream.read(1 << 16).split(b"\n", 1)[0]
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r")
    if not text.strip():
        raise _EmptyFile("empty file (no header)")
    return [name.strip() for name in next(csv.reader([text]))]


def _check_columns(adapter: DatasetAdapter, found: list[str], path: str) -> None:
    """Stop with expected vs found when required columns are missing."""
    missing = [c for c in adapter.column_names if c not in found]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {missing} for dataset {adapter.name}.\n"
            f"  expected: {adapter.column_names}\n"
            f"  found:    {[ascii(name) for name in found]}\n"
            "Hidden characters are shown escaped; check the export's header line and "
            "the --dataset / --schema you chose."
        )


def _csv_batches(fs: pafs.FileSystem, fs_path: str, path: str, adapter: DatasetAdapter):
    """Yield (raw text batch, source lines, field-count faults) from a CSV file."""
    names = _read_header(fs, fs_path, path)
    _check_columns(adapter, names, path)
    faults: list[dict[str, Any]] = []

    def on_invalid(row: Any) -> str:
        faults.append(
            {
                "source_file": path,
                "source_line": row.number,
                "reason": "field_count",
                "detail": f"expected {row.expected_columns} fields, "
                f"found {row.actual_columns}",
                "raw": row.text,
            }
        )
        return "skip"

    compression = "gzip" if path.endswith(".gz") else None
    compression = "bz2" if path.endswith(".bz2") else compression
    stream = fs.open_input_stream(fs_path, compression=compression)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=names,
                skip_rows=1,
                use_threads=False,  # keeps row numbers for the quarantine
                block_size=_BLOCK_BYTES,
            ),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                include_columns=adapter.column_names,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise _EmptyFile("empty file (no header)") from exc
        raise IngestError(f"{path}: cannot read as CSV: {exc}") from exc

    next_line, rows_seen = 2, 0
    for batch in reader:
        # Physical line of each row: count on, stepping over lines refused above.
        refused = np.array([f["source_line"] for f in faults], dtype=np.int64)
        span = np.arange(next_line, next_line + batch.num_rows + len(refused))
        lines = span[~np.isin(span, refused)][: batch.num_rows]
        if batch.num_rows:
            next_line = int(lines[-1]) + 1
        rows_seen += batch.num_rows + len(faults)
        yield pa.Table.from_batches([batch]), lines, faults[:]
        faults.clear()
    if faults:
        rows_seen += len(faults)
        yield (
            pa.table({n: pa.array([], pa.string()) for n in adapter.column_names}),
            (np.array([], dtype=np.int64)),
            faults[:],
        )
    if rows_seen == 0:
        raise _EmptyFile("header only, 0 rows")


def _parquet_batches(
    fs: pafs.FileSystem, fs_path: str, path: str, adapter: DatasetAdapter
):
    """Yield (raw text batch, row numbers, no faults) from a Parquet file."""
    parquet = pq.ParquetFile(fs_path, filesystem=fs)
    names = [n.strip().lstrip("\ufeff") for n in parquet.schema_arrow.names]
    _check_columns(adapter, names, path)
    if parquet.metadata.num_rows == 0:
        raise _EmptyFile("0 rows")
    rename = dict(zip(parquet.schema_arrow.names, names, strict=True))
    row = 1
    for batch in parquet.iter_batches(batch_size=1 << 16):
        table = pa.Table.from_batches([batch]).rename_columns(
            [rename[n] for n in batch.schema.names]
        )
        table = table.select(adapter.column_names)
        text = pa.table({n: pc.cast(table[n], pa.string()) for n in table.column_names})
        lines = np.arange(row, row + table.num_rows, dtype=np.int64)
        row += table.num_rows
        yield text, lines, []


def _update_ranges(
    ranges: dict[str, list[float]], typed: pa.Table, adapter: DatasetAdapter
) -> None:
    """Fold a batch's per-column minimum and maximum into `ranges`."""
    if typed.num_rows == 0:
        return
    for col in adapter.numeric_features:
        mm = pc.min_max(typed[col]).as_py()
        old = ranges.get(col, [mm["min"], mm["max"]])
        ranges[col] = [min(old[0], mm["min"]), max(old[1], mm["max"])]


def check_parquet_types(
    files: list[str], adapter: DatasetAdapter, storage: Storage
) -> None:
    """Stop when a column is text in one Parquet input and numeric in another.

    Integer and floating-point types mix freely (integers are promoted).

    Raises:
        IngestError: naming the column, both files and both types.
    """
    seen: dict[str, tuple[str, pa.DataType]] = {}
    for path in files:
        if not path.lower().endswith(".parquet"):
            continue
        fs, fs_path = storage.filesystem(path)
        schema = pq.read_schema(fs_path, filesystem=fs)
        for field_ in schema:
            name = field_.name.strip().lstrip("\ufeff")
            if name not in adapter.column_names:
                continue
            kind = _type_kind(field_.type)
            if name in seen and _type_kind(seen[name][1]) != kind:
                first, first_type = seen[name]
                raise IngestError(
                    f"{path}: column {name!r} is {field_.type} here but {first_type} in "
                    f"{first}. Write the column with one type in every file (numbers "
                    "as numbers), or convert these files to CSV."
                )
            seen.setdefault(name, (path, field_.type))


def _type_kind(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    return str(dtype)


def _type_batch(
    adapter: DatasetAdapter,
    raw: pa.Table,
    lines: np.ndarray,
    path: str,
    nonfinite: str = "quarantine",
    result: FileResult | None = None,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Parse a text batch by the schema; return typed good rows and quarantined rows."""
    n = raw.num_rows
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, why: str, what: Any) -> None:
        fresh = mask & (reason == None)  # noqa: E711  (object array comparison)
        reason[fresh] = why
        for i in np.flatnonzero(fresh):
            detail[i] = what(i)

    columns: dict[str, pa.Array] = {}
    for col in adapter.columns:
        cells = raw[col.name].combine_chunks()
        if col.kind is Kind.NUMERIC:
            values, bad = parse_numbers(cells, col.base)
            text = cells.to_numpy(zero_copy_only=False)
            shifted = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(bad):
                shifted[i] = bool(_IP_OR_HOST.match(str(text[i]).strip()))
            flag(
                shifted,
                "shifted_columns",
                lambda i, c=col.name, t=text: (
                    f"column {c}: {t[i]!r} where a number "
                    "belongs (the row's fields look shifted)"
                ),
            )
            flag(
                bad,
                "unparseable_number",
                lambda i, c=col.name, t=text, b=col.base: (
                    f"column {c}: {t[i]!r} is not a base-{b} number"
                ),
            )
            infinite = ~bad & ~np.isfinite(values)
            if nonfinite == "impute" and infinite.any():
                # TODO(iids): impute a training-split statistic (median) instead of 0.
                values = np.where(infinite, 0.0, values)
                if result is not None:
                    result.cells_imputed[col.name] += int(infinite.sum())
            else:
                flag(
                    infinite,
                    "nonfinite_number",
                    lambda i, c=col.name, t=text: f"column {c}: {t[i]!r} is not finite",
                )
            columns[col.name] = pa.array(values, pa.float64())
        elif col.kind is Kind.LABEL:
            labels, unknown = _parse_labels(adapter, col.name, cells)
            text = cells.to_numpy(zero_copy_only=False)
            flag(
                unknown,
                "unknown_label",
                lambda i, c=col.name, t=text: (
                    f"column {c}: {t[i]!r} is not a known label"
                ),
            )
            columns[col.name] = labels
        else:
            columns[col.name] = pc.utf8_trim_whitespace(cells)

    # Split good rows from quarantined ones, keeping each fault's source line.
    bad_mask = reason != None  # noqa: E711
    good = pa.table(columns).filter(pa.array(~bad_mask))
    good = good.append_column("source_file", pa.array([path] * good.num_rows))
    good = good.append_column("source_line", pa.array(lines[~bad_mask], pa.int64()))
    quarantined = []
    for i in np.flatnonzero(bad_mask):
        raw_row = ",".join(str(raw[c][i]) for c in raw.column_names)
        quarantined.append(
            {
                "source_file": path,
                "source_line": int(lines[i]),
                "reason": reason[i],
                "detail": detail[i],
                "raw": raw_row,
            }
        )
    return good, quarantined


def _parse_labels(
    adapter: DatasetAdapter, column: str, cells: pa.Array
) -> tuple[pa.Array, np.ndarray]:
    """Normalised labels of one label column and the mask of unknown or empty ones."""
    known: set[str] = set()
    for task in adapter.tasks.values():
        if task.label_column == column:
            known.update(task.classes)
            known.update(task.mapping)
    text = pc.utf8_trim_whitespace(cells)
    if adapter.label_aliases:
        encoded = pc.dictionary_encode(text)
        renamed = [
            adapter.label_aliases.get(s, s) for s in encoded.dictionary.to_pylist()
        ]
        text = pc.take(pa.array(renamed, pa.string()), encoded.indices)
    if not known:  # a label column no task reads: keep as written
        return text, np.zeros(len(text), dtype=bool)
    unknown = ~np.asarray(
        pc.is_in(text, value_set=pa.array(sorted(known))).fill_null(False)
    )
    return text, unknown
