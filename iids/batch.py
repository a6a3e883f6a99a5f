"""Batch scoring of stored logs with Ray Data, published exactly once.

Parquet rows in (an ingested dataset, or one `day=YYYY-MM-DD` partition of it), predictions
out: `read_parquet` -> `map_batches` on an actor pool (each actor loads the bundle once,
scores with the shared scoring core and writes each scored batch as one file into a staging
directory). A row whose features cannot be built (a cell that is empty, not a number or not
finite) is not scored: it is written under `_quarantine/` in the same staging directory with
its row key, column, value and reason, in ingest's vocabulary. Only when every input row is
accounted for (rows in = rows scored + rows quarantined = rows in the staging files, each
side counted from Parquet footers) is the staging directory published under the output,
with a `_SUCCESS` manifest; a failed run leaves the previous output (or nothing) in place,
and a rerun replaces it instead of adding to it.

    <output>/day=YYYY-MM-DD/
        part-*.parquet      row_key, predicted_class, probability, model_version, scored_at
        _quarantine/part-*.parquet   row_key, column, reason, value, detail, ... (if any)
        _summary.md   _SUCCESS (the summary as JSON, written last)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from iids.bundle import BundleInfo, read_bundle_info, resolve_bundle
from iids.data import dataset_files, read_dataset
from iids.ingest import KEY_COLUMNS, QUARANTINE_DIR, parse_day
from iids.preprocess import FeatureError
from iids.runtime import init_ray
from iids.scoring import DEFAULT_BATCH_SIZE, Scorer
from iids.storage import Storage, is_s3, join

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
SUMMARY_MD = "_summary.md"
PREDICTION_COLUMNS = (
    "row_key",
    "predicted_class",
    "probability",
    "model_version",
    "scored_at",
)
QUARANTINE_COLUMNS = (
    "row_key",
    "column",
    "reason",
    "value",
    "detail",
    "model_version",
    "scored_at",
)

# Logical CPUs each Parquet read task reserves: decoding a block takes a small fraction
# of the time the model spends on it.
IO_CPUS = 0.25
# Logical CPUs the scoring actors leave free, so that read tasks can always start
# beside them.
_IO_RESERVE_CPUS = 1.0
# TODO(iids): on 2 CPUs a night of Edge-IIoTset rows scores at about 0.58 of the bare
# model's rate (CICIoV2024: 0.85): besides the model (about 10 us per row on one
# thread), each row costs about 1.8 us of CPU in Ray Data's read tasks (decoding 48
# wide columns and passing them through the object store) and 1.7 us in the actor
# (features, keys, writing), and the cores stay about a fifth idle. Reading a night's
# row groups inside the actors would remove the object-store hop; not tried yet.
#
# Parquet read tasks running at once, per scoring actor. A read task decodes rows
# more than ten times as fast as an actor scores them (local disk: about 2 million
# rows/s against 150,000), so a few keep every actor fed. Left to itself, Ray Data
# starts one read task per file at once; on 2 CPUs their worker processes' start-up
# held back the actors' for seconds (2 million rows in 8 files: the actors began
# scoring 6.5 s into the night instead of 4.5 s).
_READS_PER_ACTOR = 0.5
# Below this, an actor's reservation no longer says anything about its load.
_MIN_ACTOR_CPUS = 0.25
# Bytes per block read. Ray Data reads Parquet in blocks of up to 128 MiB, which for a
# night of a million rows is one block: one actor would score all of it. Smaller blocks
# give every actor work.
_BLOCK_BYTES = 8 << 20
# Rows per scoring call, and so at most per predictions file: an actor scores a batch
# of up to this many rows and writes it as one file into the staging directory. The
# predictions never travel through the object store to separate write tasks (on two
# CPUs those tasks and their worker processes took about a third of a core from the
# actors). Large enough for few files per night, small enough that the last batch of
# a night does not keep one actor busy long after the others are done.
_ROWS_PER_FILE = 32 * 1024
# Parquet dictionary encoding pays on the columns with few distinct values; on the
# unique row keys it only costs time.
_DICTIONARY_COLUMNS = (
    "predicted_class",
    "model_version",
    "scored_at",
    "column",
    "reason",
)
# A scoring actor that dies (killed, out of memory) is restarted and its batch retried,
# this many times; past that the night fails rather than retrying forever.
MAX_ACTOR_RESTARTS = 3


class _ScoringActor:
    """A Ray Data actor: loads the bundle once, then scores batch after batch.

    Each batch is written into the night's staging directory as one predictions file
    (and one quarantine file when some of its rows cannot be scored), named after the
    batch's row keys: a batch retried after its actor died rewrites its own files
    instead of adding to them. The actor hands back one row per batch: the file's name
    and what it holds, for the night's accounting and summary.
    """

    def __init__(
        self,
        bundle_uri: str,
        storage: Storage,
        threads: int,
        batch_size: int,
        staging: str,
        run_id: str,
        scored_at: str,
    ):
        from iids.config import configure_logging

        configure_logging()
        self.scorer = Scorer.from_uri(
            bundle_uri, storage, threads=threads, batch_size=batch_size
        )
        self.classes = pa.array(self.scorer.classes, pa.string())
        self.fs, self.root = storage.filesystem(staging)
        self.directories: set[str] = set()  # made already
        self.run_id = run_id
        self.run_columns = {
            "model_version": self.scorer.version,
            "scored_at": scored_at,
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        predicted, proba, faults = self.scorer.score_checked(batch)
        keys = _row_keys(batch)
        name = _file_name(self.run_id, keys)
        if len(predicted):
            scored = {
                "row_key": keys.filter(pa.array(faults.keep(len(keys))))
                if faults
                else keys,
                "predicted_class": self.classes.take(pa.array(predicted)),
                "probability": pa.array(
                    proba[np.arange(len(predicted)), predicted], pa.float32()
                ),
            }
            self._write(name, pa.table(scored), PREDICTION_COLUMNS)
        if faults:
            quarantined = {
                "row_key": keys.take(pa.array(faults.rows)),
                "column": pa.array(faults.columns, pa.string()),
                "reason": pa.array(faults.reasons, pa.string()),
                "value": pa.array(faults.values, pa.string()),
                "detail": pa.array(faults.details, pa.string()),
            }
            self._write(
                f"{QUARANTINE_DIR}/{name}", pa.table(quarantined), QUARANTINE_COLUMNS
            )
        counts = np.bincount(predicted, minlength=len(self.classes))
        per_class = {
            cls: int(n) for cls, n in zip(self.scorer.classes, counts, strict=True) if n
        }
        return pa.table(
            {
                "file": [name],
                "rows_per_class": [json.dumps(per_class)],
                "quarantined_by_reason": [json.dumps(Counter(faults.reasons))],
            }
        )

    def _write(self, name: str, table: pa.Table, columns: tuple[str, ...]) -> None:
        """One Parquet file under the staging directory: the batch's columns and those
        the same on every row, in the order of `columns`."""
        path = f"{self.root}/{name}"
        for column, value in self.run_columns.items():
            table = table.append_column(
                column, pa.repeat(pa.scalar(value, pa.string()), table.num_rows)
            )
        directory = path.rsplit("/", 1)[0]
        if directory not in self.directories:
            self.fs.create_dir(directory, recursive=True)
            self.directories.add(directory)
        pq.write_table(
            table.select(columns),
            path,
            filesystem=self.fs,
            use_dictionary=[c for c in _DICTIONARY_COLUMNS if c in table.column_names],
        )


def _file_name(run_id: str, keys: pa.Array) -> str:
    """A batch's file name: the run, and a digest of the batch's row keys."""
    text = "\n".join(map(str, keys.to_pylist()))
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    return f"part-{run_id}-{digest}.parquet"


def _row_keys(batch: pa.Table) -> pa.Array:
    """`file:line` keys from ingest's key columns, or `row_key` when the rows carry it."""
    if "row_key" in batch.column_names:
        return batch["row_key"].combine_chunks().cast(pa.string())
    if "source_file" in batch.column_names and "source_line" in batch.column_names:
        return pc.binary_join_element_wise(
            batch["source_file"], batch["source_line"].cast(pa.string()), ":"
        ).combine_chunks()
    raise ValueError(
        "rows to score carry no key: expected a `row_key` column or ingest's "
        f"`source_file` and `source_line`; found {batch.column_names}"
    )


def score_dataset(
    bundle_uri: str,
    input_uri: str,
    output_uri: str,
    *,
    day: str | None = None,
    storage: Storage | None = None,
    num_actors: int | None = 1,
    threads_per_actor: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    alert_attack_share: float | None = None,
) -> dict[str, Any]:
    """Score stored rows with a bundle and publish the predictions once.

    Rows whose features cannot be built are quarantined, not scored: they are published
    with the predictions under `_quarantine/`, each with its row key, the column, the
    value found and the reason, and counted in the summary.

    Args:
        bundle_uri: the model bundle, or a models root: its promoted bundle
            (`iids.bundle.promote`).
        input_uri: Parquet rows in the dataset's raw schema (an ingested dataset).
        output_uri: predictions are published at `output_uri` (or `output_uri/day=DAY`).
        day: score only the `day=DAY` partition of the input.
        storage: where everything lives.
        num_actors: scoring actors (each holds one bundle); None: one per
            `threads_per_actor` CPUs of the Ray cluster when scoring starts.
        threads_per_actor: torch threads per actor. An actor reserves that many
            logical CPUs, or less when the cluster is small, so that Ray Data's
            read tasks can still start.
        batch_size: rows per model call.
        alert_attack_share: when the share of scored rows predicted as attacks
            exceeds this, the summary's `alert` says so (the predictions are still
            published).

    Returns:
        The run's summary, also written as the `_SUCCESS` manifest and, beside it, as
        `_summary.md`.

    Raises:
        FileNotFoundError: no such input, partition or bundle.
        FeatureError: an input file lacks a feature column the model needs (the
            message names the file and the column); nothing is published.
        ValueError: bad arguments, or input rows that carry no row key.
        RuntimeError: the rows written do not account for every input row; nothing
            is published.
    """
    counts = {
        "num_actors": num_actors,
        "threads_per_actor": threads_per_actor,
        "batch_size": batch_size,
    }
    too_small = {k: v for k, v in counts.items() if v is not None and v < 1}
    if too_small:
        raise ValueError(f"expected {' and '.join(too_small)} >= 1, found {too_small}")
    storage = storage or Storage()
    partition = f"day={parse_day(day)}" if day else None
    target = join(output_uri, partition) if partition else output_uri
    started = time.perf_counter()
    scored_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    # A models root scores with its promoted bundle, resolved once for the whole night.
    bundle_uri = resolve_bundle(bundle_uri, storage)
    # Check and count the input from its Parquet footers, before anything is written.
    info = read_bundle_info(bundle_uri, storage)
    files = dataset_files(input_uri, storage, partition)
    rows_in, key_columns = _check_input(files, input_uri, partition, storage, info)

    # Score into a staging directory beside the target.
    run_id = uuid.uuid4().hex[:8]
    staging = f"{target.rstrip('/')}.staging-{run_id}"
    fs, staging_path = storage.filesystem(staging)
    try:
        fs.create_dir(staging_path, recursive=True)
        totals = {
            "rows_per_class": Counter(),
            "quarantined_by_reason": Counter(),
            "num_actors": 0,  # an empty night starts none
            "cpus_per_actor": None,
        }
        if rows_in:
            totals = _score(
                bundle_uri,
                input_uri,
                partition,
                staging,
                storage,
                columns=[*info.preprocessor.input_columns, *key_columns],
                run_id=run_id,
                scored_at=scored_at,
                num_actors=num_actors,
                threads_per_actor=threads_per_actor,
                batch_size=batch_size,
            )

        # Account for every input row: what the actors counted, and what the files
        # in the staging directory hold.
        rows_written = _rows_written(staging, storage)
        per_class = {name: int(totals["rows_per_class"][name]) for name in info.classes}
        rows_scored = sum(totals["rows_per_class"].values())
        rows_quarantined = sum(totals["quarantined_by_reason"].values())
        if not rows_in == rows_scored + rows_quarantined == rows_written:
            raise RuntimeError(
                f"scoring accounted for {rows_scored} scored + {rows_quarantined} "
                f"quarantined rows ({rows_written} written) of {rows_in} "
                f"input rows in {partition or input_uri}; nothing was published"
            )
        unknown = set(totals["rows_per_class"]) - set(info.classes)
        assert not unknown, f"predicted classes outside the bundle's: {unknown}"

        elapsed = time.perf_counter() - started
        attacks = sum(v for k, v in per_class.items() if k != info.negative_class)
        summary = {
            "input": input_uri,
            "partition": partition,
            "output": target,
            "model_bundle": bundle_uri,
            "model_version": info.version,
            "rows_in": rows_in,
            "rows_scored": rows_scored,
            "rows_quarantined": rows_quarantined,
            "quarantined_by_reason": dict(totals["quarantined_by_reason"]),
            "quarantine": join(target, QUARANTINE_DIR) if rows_quarantined else None,
            "rows_per_class": per_class,
            "attack_share": attacks / rows_scored if rows_scored else 0.0,
            "seconds": round(elapsed, 2),
            "rows_per_s": rows_in / elapsed if elapsed > 0 else None,
            "input_files": len(files),
            "input_fingerprint": _fingerprint(files, storage, input_uri),
            "scored_at": scored_at,
            "num_actors": totals["num_actors"],
            "threads_per_actor": threads_per_actor,
            "cpus_per_actor": totals["cpus_per_actor"],
            "batch_size": batch_size,
            "alert": None,
        }
        if (
            alert_attack_share is not None
            and summary["attack_share"] > alert_attack_share
        ):
            summary["alert"] = (
                f"ALERT: {summary['attack_share']:.2%} of {rows_scored:,} scored rows "
                f"predicted as attacks (threshold {alert_attack_share:.2%}) in "
                f"{partition or input_uri}"
            )
            logger.warning(summary["alert"])
        if rows_quarantined:
            logger.warning(
                "%d of %d rows quarantined %s -> %s",
                rows_quarantined,
                rows_in,
                summary["quarantined_by_reason"],
                summary["quarantine"],
            )

        # Publish: the manifest goes in last, then the directory replaces the old output.
        storage.write_bytes(
            join(staging, SUMMARY_MD), summary_markdown(summary).encode()
        )
        storage.write_json(join(staging, SUCCESS), summary)
        storage.move_dir(staging, target)
    except BaseException:
        storage.delete_dir(staging)
        raise
    logger.info(
        "scored %d rows (%d quarantined) in %.1f s (%.0f rows/s) -> %s",
        rows_in,
        rows_quarantined,
        elapsed,
        summary["rows_per_s"] or 0,
        target,
    )
    return summary


def _score(
    bundle_uri: str,
    input_uri: str,
    partition: str | None,
    staging: str,
    storage: Storage,
    *,
    columns: list[str],
    run_id: str,
    scored_at: str,
    num_actors: int | None,
    threads_per_actor: int,
    batch_size: int,
) -> dict[str, Any]:
    """Read `columns`, score and write into `staging`; return what the actors counted.

    Only the feature and key columns are read: labels, and any other column the logs
    carry, are neither decoded nor passed through the object store.
    """
    import ray
    import ray.data

    init_ray()
    cluster_cpus = ray.cluster_resources().get("CPU", 0.0)
    num_actors = num_actors or max(1, int(cluster_cpus // threads_per_actor))
    actor_cpus = _actor_cpus(num_actors, threads_per_actor, cluster_cpus)
    logger.info(
        "scoring with %d actor(s) x %d thread(s), %.2f CPU(s) reserved each, on a "
        "Ray cluster of %g CPU(s)",
        num_actors,
        threads_per_actor,
        actor_cpus,
        cluster_cpus,
    )
    ds = read_dataset(
        input_uri,
        storage,
        columns=columns,
        partition=partition,
        num_cpus=IO_CPUS,
        concurrency=max(1, math.ceil(num_actors * _READS_PER_ACTOR)),
    )
    ds.context.target_max_block_size = _BLOCK_BYTES  # this run only, not the process
    with warnings.catch_warnings():
        # Ray Data restarts actors and retries their batches forever by default; the
        # bound goes in as remote args, deprecated in Ray 2.60 with no named parameter
        # to replace them yet.
        # TODO(iids): pass the bound by name when Ray Data has one (removal in 2.64).
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        outputs = ds.map_batches(
            _ScoringActor,
            fn_constructor_args=(
                bundle_uri,
                storage,
                threads_per_actor,
                batch_size,
                staging,
                run_id,
                scored_at,
            ),
            batch_format="pyarrow",
            batch_size=_ROWS_PER_FILE,
            num_cpus=actor_cpus,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            max_restarts=MAX_ACTOR_RESTARTS,
            max_task_retries=MAX_ACTOR_RESTARTS,
        )
    # One row per file written; a batch retried after its actor died reports its file
    # again, so the files are counted by name.
    files = {row["file"]: row for row in outputs.iter_rows()}
    per_class: Counter = Counter()
    per_reason: Counter = Counter()
    for row in files.values():
        per_class.update(json.loads(row["rows_per_class"]))
        per_reason.update(json.loads(row["quarantined_by_reason"]))
    return {
        "rows_per_class": per_class,
        "quarantined_by_reason": per_reason,
        "num_actors": num_actors,
        "cpus_per_actor": actor_cpus,
    }


def _rows_written(staging: str, storage: Storage) -> int:
    """Rows in the Parquet files under `staging`, from their footers."""
    fs, root = storage.filesystem(staging)
    paths = [
        info.path
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if info.is_file and info.path.endswith(".parquet")
    ]
    return sum(meta.num_rows for meta in _footers(paths, fs))


def _footers(paths: list[str], fs: pafs.FileSystem) -> list[pq.FileMetaData]:
    """The Parquet footers of `paths`, read in parallel (one request each on S3)."""
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(paths)))) as pool:
        return list(pool.map(lambda path: pq.read_metadata(path, filesystem=fs), paths))


def _actor_cpus(num_actors: int, threads_per_actor: int, cluster_cpus: float) -> float:
    """Logical CPUs each scoring actor reserves.

    An actor runs `threads_per_actor` threads and reserves as many CPUs when the
    cluster has them to spare. Otherwise it reserves less, so that the pool leaves
    Ray Data one CPU for its read tasks: a pool holding every CPU leaves them
    waiting, and the run hangs (seen with 1 actor x 2 threads and 2 actors x 1
    thread on 2 CPUs).
    """
    share = (cluster_cpus - _IO_RESERVE_CPUS) / num_actors
    if share >= threads_per_actor:
        return float(threads_per_actor)
    if share >= _MIN_ACTOR_CPUS:
        return share
    logger.warning(
        "%d scoring actor(s) do not fit beside Ray Data's read and write "
        "tasks on the %g CPU(s) this Ray cluster has now: scoring waits until the "
        "cluster grows. On a fixed-size cluster, use fewer actors.",
        num_actors,
        cluster_cpus,
    )
    return float(threads_per_actor)


def _check_input(
    files: list[str],
    input_uri: str,
    partition: str | None,
    storage: Storage,
    info: BundleInfo,
) -> tuple[int, tuple[str, ...]]:
    """The input's row count from its Parquet footers, once every file has the columns,
    and the key columns to read: `row_key` when every file has it, else ingest's
    `source_file` and `source_line`.

    Raises:
        FeatureError: a file lacks a feature column the model needs.
        ValueError: a file has no row key (`row_key`, or `source_file` and
            `source_line`), or the files do not share one kind of key.
    """
    fs, root = storage.filesystem(input_uri)
    prefix = "s3://" if is_s3(input_uri) else ""

    footers = [
        (meta.num_rows, meta.schema.to_arrow_schema().names)
        for meta in _footers(files, fs)
    ]

    where = f"partition {partition} of {input_uri}" if partition else input_uri
    needed = info.preprocessor.input_columns
    for path, (_, names) in zip(files, footers, strict=True):
        present = set(names) | _hive_keys(path, root)
        missing = [c for c in needed if c not in present]
        if missing:
            raise FeatureError(
                f"{prefix}{path}: missing feature column(s) {missing} that model "
                f"{info.version} needs ({where}).\n"
                f"  expected: {needed}\n"
                f"  found:    {names}\n"
                "Nothing was scored or published. Score these rows with a bundle "
                f"trained on their dataset, or ingest them as {info.adapter.name!r}."
            )
        if "row_key" not in present and not {"source_file", "source_line"} <= present:
            raise ValueError(
                f"{prefix}{path}: rows carry no key ({where}): expected a `row_key` "
                "column or ingest's `source_file` and `source_line`; found "
                f"{names}. Ingest the logs with `iids ingest` or add a `row_key`."
            )
    rows_in = sum(n for n, _ in footers)
    if all("row_key" in names for _, names in footers):
        return rows_in, ("row_key",)
    for path, (_, names) in zip(files, footers, strict=True):
        if not {"source_file", "source_line"} <= set(names):
            without = next(
                p
                for p, (_, n) in zip(files, footers, strict=True)
                if "row_key" not in n
            )
            raise ValueError(
                f"{prefix}{path} keys its rows by `row_key` only, but {prefix}{without} "
                f"has no `row_key` ({where}): every file must carry `row_key`, or every "
                "file ingest's `source_file` and `source_line`."
            )
    return rows_in, KEY_COLUMNS


def _hive_keys(path: str, root: str) -> set[str]:
    """The `key=value` directory names between `root` and a file: partition columns."""
    parts = path[len(root) :].strip("/").split("/")[:-1]
    return {part.split("=", 1)[0] for part in parts if "=" in part}


def _fingerprint(files: list[str], storage: Storage, input_uri: str) -> str:
    """A digest of the input files' names, sizes and modification times."""
    import hashlib

    fs, _ = storage.filesystem(input_uri)
    digest = hashlib.sha256()
    for info in fs.get_file_info(files):
        digest.update(f"{info.path}|{info.size}|{info.mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def summary_markdown(summary: dict[str, Any]) -> str:
    """The night's summary for people: rows per class, quarantine, attack share, speed."""
    lines = [
        f"# Scoring summary: {summary['partition'] or summary['input']}",
        "",
        f"Model version `{summary['model_version']}`, scored at {summary['scored_at']}.",
        "",
    ]
    if summary.get("alert"):
        lines += [f"**{summary['alert']}**", ""]
    lines += [
        f"{summary['rows_in']:,} rows in, {summary['rows_scored']:,} scored, "
        f"{summary['rows_quarantined']:,} quarantined; attack share "
        f"{summary['attack_share']:.2%} of scored rows; "
        f"{summary['rows_per_s'] or 0:,.0f} rows/s.",
        "",
    ]
    if summary["rows_quarantined"]:
        lines += [
            f"Quarantined rows (not scored) are in `{summary['quarantine']}`, each "
            "with its row key, column, value and reason:",
            "",
            "| reason | rows |",
            "|---|---:|",
        ]
        lines += [
            f"| {reason} | {count:,} |"
            for reason, count in sorted(summary["quarantined_by_reason"].items())
        ]
        lines.append("")
    lines += ["| predicted class | rows |", "|---|---:|"]
    lines += [
        f"| {name} | {count:,} |" for name, count in summary["rows_per_class"].items()
    ]
    return "\n".join(lines) + "\n"
