"""Batch scoring of stored logs with Ray Data, published exactly once.

Parquet rows in (an ingested dataset, or one `day=YYYY-MM-DD` partition of it), predictions
out: `read_parquet` -> `map_batches` on an actor pool (each actor loads the bundle once and
scores with the shared scoring core) -> one write into a staging directory. A row whose
features cannot be built (a cell that is empty, not a number or not finite) is not scored:
it is written under `_quarantine/` in the same staging directory with its row key, column,
value and reason, in ingest's vocabulary. Only when every input row is accounted for
(rows in = rows scored + rows quarantined, the input counted from the Parquet footers) is
the staging directory published under the output, with a `_SUCCESS` manifest; a failed run
leaves the previous output (or nothing) in place, and a rerun replaces it instead of adding
to it.

    <output>/day=YYYY-MM-DD/
        part-*.parquet      row_key, predicted_class, probability, model_version, scored_at
        _quarantine/part-*.parquet   row_key, column, reason, value, detail, ... (if any)
        _summary.md   _SUCCESS (the summary as JSON, written last)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iids.bundle import BundleInfo, read_bundle_info
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

# What the actors hand to the writer: a scored row has no `reason`, a quarantined row
# has no `predicted_class`; the writer splits them into the two outputs and adds the
# columns that are the same on every row (`model_version`, `scored_at`), which need not
# travel through the object store.
_OUTPUT_SCHEMA = pa.schema(
    [
        ("row_key", pa.string()),
        ("predicted_class", pa.string()),
        ("probability", pa.float32()),
        ("column", pa.string()),
        ("reason", pa.string()),
        ("value", pa.string()),
        ("detail", pa.string()),
    ]
)

# Logical CPUs each Parquet read and write task reserves: decoding and encoding a block
# takes a small fraction of the time the model spends on it.
IO_CPUS = 0.25
# Logical CPUs the scoring actors leave free, so that read and write tasks can always
# start beside them.
_IO_RESERVE_CPUS = 1.0
# Below this, an actor's reservation no longer says anything about its load.
_MIN_ACTOR_CPUS = 0.25
# Bytes per block handed to an actor. Ray Data reads Parquet in blocks of up to 128 MiB,
# which for a night of a million rows is one block: one actor would score all of it and
# nothing would be written until the end. Smaller blocks give every actor work and let
# predictions stream to the writers.
_BLOCK_BYTES = 8 << 20
# Least rows per write task, and so per predictions file: Ray Data gathers scored blocks
# until a task has this many (the last task takes what is left). Without it Ray Data
# starts one write task per scored block, each opening its own file: on two CPUs those
# small tasks fall behind the actors and drain for seconds after the last block.
_ROWS_PER_WRITE = 128 * 1024
# A scoring actor that dies (killed, out of memory) is restarted and its batch retried,
# this many times; past that the night fails rather than retrying forever.
MAX_ACTOR_RESTARTS = 3


class _ScoringActor:
    """A Ray Data actor: loads the bundle once, then scores batch after batch."""

    def __init__(self, bundle_uri: str, storage: Storage, threads: int):
        from iids.config import configure_logging

        configure_logging()
        self.scorer = Scorer.from_uri(bundle_uri, storage, threads=threads)
        self.classes = pa.array(self.scorer.classes, pa.string())

    def __call__(self, batch: pa.Table) -> pa.Table:
        predicted, proba, faults = self.scorer.score_checked(batch)
        keys = _row_keys(batch)
        n, m, k = batch.num_rows, len(predicted), len(faults)
        no_text = pa.nulls(m, pa.string())
        scored = pa.table(
            [
                keys.filter(pa.array(faults.keep(n))) if k else keys,
                self.classes.take(pa.array(predicted)),
                pa.array(proba[np.arange(m), predicted], pa.float32()),
                no_text,
                no_text,
                no_text,
                no_text,
            ],
            schema=_OUTPUT_SCHEMA,
        )
        if not k:
            return scored
        quarantined = pa.table(
            [
                keys.take(pa.array(faults.rows)),
                pa.nulls(k, pa.string()),
                pa.nulls(k, pa.float32()),
                pa.array(faults.columns, pa.string()),
                pa.array(faults.reasons, pa.string()),
                pa.array(faults.values, pa.string()),
                pa.array(faults.details, pa.string()),
            ],
            schema=_OUTPUT_SCHEMA,
        )
        return pa.concat_tables([scored, quarantined])


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


def _night_sink(
    staging: str, storage: Storage, run_id: str, model_version: str, scored_at: str
):
    """A Ray Data datasink writing predictions and quarantined rows under `staging`.

    It takes the actors' blocks (`_OUTPUT_SCHEMA`) and writes every row with the
    model version and the night's `scored_at`.
    """
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink

    class _NightSink(Datasink):
        """Per write task: one predictions file, one quarantine file if needed."""

        def __init__(self) -> None:
            self.totals: dict[str, Any] | None = None

        @property
        def min_rows_per_write(self) -> int:
            return _ROWS_PER_WRITE

        def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
            # Files are named by the task's index: a retried task rewrites its own.
            fs, root = storage.filesystem(staging)
            name = f"part-{run_id}-{ctx.task_idx:05d}.parquet"
            writers: dict[str, pq.ParquetWriter] = {}
            per_class: Counter = Counter()
            per_reason: Counter = Counter()

            def append(path: str, table: pa.Table) -> None:
                if path not in writers:
                    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                    writers[path] = pq.ParquetWriter(path, table.schema, filesystem=fs)
                writers[path].write_table(table)

            try:
                for block in blocks:
                    table = _with_run_columns(
                        BlockAccessor.for_block(block).to_arrow(),
                        model_version,
                        scored_at,
                    )
                    bad = pc.is_valid(table["reason"])
                    scored = table.filter(pc.invert(bad)).select(PREDICTION_COLUMNS)
                    quarantined = table.filter(bad).select(QUARANTINE_COLUMNS)
                    if scored.num_rows:
                        append(f"{root}/{name}", scored)
                        per_class.update(_value_counts(scored["predicted_class"]))
                    if quarantined.num_rows:
                        append(f"{root}/{QUARANTINE_DIR}/{name}", quarantined)
                        per_reason.update(_value_counts(quarantined["reason"]))
            finally:
                for writer in writers.values():
                    writer.close()
            return {"rows_per_class": per_class, "quarantined_by_reason": per_reason}

        def on_write_complete(self, write_result: Any) -> None:
            per_class: Counter = Counter()
            per_reason: Counter = Counter()
            for part in write_result.write_returns:
                per_class.update(part["rows_per_class"])
                per_reason.update(part["quarantined_by_reason"])
            self.totals = {
                "rows_written": write_result.num_rows,
                "rows_per_class": per_class,
                "quarantined_by_reason": per_reason,
            }

    return _NightSink()


def _with_run_columns(table: pa.Table, model_version: str, scored_at: str) -> pa.Table:
    """An actor's block with the run's columns, the same on every row."""
    for name, value in (("model_version", model_version), ("scored_at", scored_at)):
        column = pa.repeat(pa.scalar(value, pa.string()), table.num_rows)
        table = table.append_column(name, column)
    return table


def _value_counts(values: pa.ChunkedArray) -> dict[str, int]:
    return {
        item["values"]: int(item["counts"])
        for item in pc.value_counts(values).to_pylist()
    }


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
        bundle_uri: the model bundle.
        input_uri: Parquet rows in the dataset's raw schema (an ingested dataset).
        output_uri: predictions are published at `output_uri` (or `output_uri/day=DAY`).
        day: score only the `day=DAY` partition of the input.
        storage: where everything lives.
        num_actors: scoring actors (each holds one bundle); None: one per
            `threads_per_actor` CPUs of the Ray cluster when scoring starts.
        threads_per_actor: torch threads per actor. An actor reserves that many
            logical CPUs, or less when the cluster is small, so that Ray Data's
            read and write tasks can still start.
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
            "rows_written": 0,
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
                model_version=info.version,
                scored_at=scored_at,
                num_actors=num_actors,
                threads_per_actor=threads_per_actor,
                batch_size=batch_size,
            )

        # Account for every input row, independently of what was written.
        per_class = {name: int(totals["rows_per_class"][name]) for name in info.classes}
        rows_scored = sum(totals["rows_per_class"].values())
        rows_quarantined = sum(totals["quarantined_by_reason"].values())
        if not rows_in == rows_scored + rows_quarantined == totals["rows_written"]:
            raise RuntimeError(
                f"scoring accounted for {rows_scored} scored + {rows_quarantined} "
                f"quarantined rows ({totals['rows_written']} written) of {rows_in} "
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
    model_version: str,
    scored_at: str,
    num_actors: int | None,
    threads_per_actor: int,
    batch_size: int,
) -> dict[str, Any]:
    """Read `columns`, score and write into `staging`; return what the writers counted.

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
            fn_constructor_args=(bundle_uri, storage, threads_per_actor),
            batch_format="pyarrow",
            batch_size=batch_size,
            num_cpus=actor_cpus,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            max_restarts=MAX_ACTOR_RESTARTS,
            max_task_retries=MAX_ACTOR_RESTARTS,
        )
    sink = _night_sink(staging, storage, run_id, model_version, scored_at)
    outputs.write_datasink(sink, ray_remote_args={"num_cpus": IO_CPUS})
    assert sink.totals is not None, "the datasink did not report its writes"
    return {**sink.totals, "num_actors": num_actors, "cpus_per_actor": actor_cpus}


def _actor_cpus(num_actors: int, threads_per_actor: int, cluster_cpus: float) -> float:
    """Logical CPUs each scoring actor reserves.

    An actor runs `threads_per_actor` threads and reserves as many CPUs when the
    cluster has them to spare. Otherwise it reserves less, so that the pool leaves
    Ray Data one CPU for its read and write tasks: a pool holding every CPU leaves
    them waiting, and the run hangs (seen with 1 actor x 2 threads and 2 actors x 1
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

    def footer(path: str) -> tuple[int, list[str]]:
        meta = pq.read_metadata(path, filesystem=fs)
        return meta.num_rows, meta.schema.to_arrow_schema().names

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(files)))) as pool:
        footers = list(pool.map(footer, files))

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
