"""Batch scoring of stored logs with Ray Data, published exactly once.

Parquet rows in (an ingested dataset, or one `day=YYYY-MM-DD` partition of it), predictions
out: `read_parquet` -> `map_batches` on an actor pool (each actor loads the bundle once and
scores with the shared scoring core) -> `write_parquet` into a staging directory. Only when
the row count checks out is the staging directory published under the output, with a
`_SUCCESS` manifest; a failed run leaves the previous output (or nothing) in place, and a
rerun replaces it instead of adding to it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from iids.data import dataset_files, read_dataset
from iids.ingest import parse_day
from iids.scoring import DEFAULT_BATCH_SIZE, Scorer
from iids.storage import Storage, join

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


class _ScoringActor:
    """A Ray Data actor: loads the bundle once, then scores batch after batch."""

    def __init__(self, bundle_uri: str, storage: Storage, threads: int, scored_at: str):
        from iids.config import configure_logging

        configure_logging()
        self.scorer = Scorer.from_uri(bundle_uri, storage, threads=threads)
        self.scored_at = scored_at

    def __call__(self, batch: pa.Table) -> pa.Table:
        predicted, proba = self.scorer.score(batch)
        names = np.asarray(self.scorer.classes, dtype=object)[predicted]
        n = batch.num_rows
        return pa.table(
            {
                "row_key": _row_keys(batch),
                "predicted_class": pa.array(names, pa.string()),
                "probability": pa.array(proba[np.arange(n), predicted], pa.float32()),
                "model_version": pa.array([self.scorer.version] * n, pa.string()),
                "scored_at": pa.array([self.scored_at] * n, pa.string()),
            }
        )


def _row_keys(batch: pa.Table) -> pa.Array:
    """`file:line` keys from ingest's key columns, or `row_key` when the rows carry it."""
    if "row_key" in batch.column_names:
        return batch["row_key"].cast(pa.string())
    if "source_file" in batch.column_names and "source_line" in batch.column_names:
        return pc.binary_join_element_wise(
            batch["source_file"], batch["source_line"].cast(pa.string()), ":"
        )
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
    num_actors: int = 1,
    threads_per_actor: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    alert_attack_share: float | None = None,
) -> dict[str, Any]:
    """Score stored rows with a bundle and publish the predictions once.

    Args:
        bundle_uri: the model bundle.
        input_uri: Parquet rows in the dataset's raw schema (an ingested dataset).
        output_uri: predictions are published at `output_uri` (or `output_uri/day=DAY`).
        day: score only the `day=DAY` partition of the input.
        storage: where everything lives.
        num_actors: scoring actors (each holds one bundle).
        threads_per_actor: torch threads per actor; keep actors x threads below the
            cluster's CPUs so reads and writes still get a core.
        batch_size: rows per model call.
        alert_attack_share: when the share of rows predicted as attacks exceeds this,
            the summary's `alert` says so (the predictions are still published).

    Returns:
        The run's summary, also written as the `_SUCCESS` manifest and, beside it, as
        `_summary.md`.

    Raises:
        FileNotFoundError: no such input, partition or bundle.
        RuntimeError: the output row count differs from the input's.
    """
    import ray.data

    storage = storage or Storage()
    partition = f"day={parse_day(day)}" if day else None
    target = join(output_uri, partition) if partition else output_uri
    started = time.perf_counter()
    scored_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    # Count the input, so the output can be checked against it.
    files = dataset_files(input_uri, storage, partition)
    scorer_meta = Scorer.from_uri(bundle_uri, storage)
    rows_in = 0
    summary_counts: dict[str, int] = dict.fromkeys(scorer_meta.classes, 0)
    staging = f"{target.rstrip('/')}.staging-{uuid.uuid4().hex[:8]}"
    if files:
        ds = read_dataset(input_uri, storage, partition=partition)
        rows_in = ds.count()
        predictions = ds.map_batches(
            _ScoringActor,
            fn_constructor_args=(bundle_uri, storage, threads_per_actor, scored_at),
            batch_format="pyarrow",
            batch_size=batch_size,
            num_cpus=threads_per_actor,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
        )
        fs, staging_path = storage.filesystem(staging)
        try:
            predictions.write_parquet(staging_path, filesystem=fs)
            written = pads.dataset(staging_path, filesystem=fs, format="parquet")
            rows_out = written.count_rows()
            if rows_out != rows_in:
                raise RuntimeError(
                    f"scoring wrote {rows_out} predictions for {rows_in} input rows; "
                    "nothing was published"
                )
            classes = written.to_table(columns=["predicted_class"])["predicted_class"]
            for item in pc.value_counts(classes).to_pylist():
                summary_counts[item["values"]] = int(item["counts"])
        except BaseException:
            storage.delete_dir(staging)
            raise
    else:
        fs, staging_path = storage.filesystem(staging)
        fs.create_dir(staging_path, recursive=True)

    elapsed = time.perf_counter() - started
    negative = scorer_meta.bundle.adapter.negative_class[scorer_meta.bundle.task.name]
    attacks = sum(v for k, v in summary_counts.items() if k != negative)
    summary = {
        "input": input_uri,
        "partition": partition,
        "output": target,
        "model_bundle": bundle_uri,
        "model_version": scorer_meta.version,
        "rows_in": rows_in,
        "rows_scored": sum(summary_counts.values()),
        # TODO(iids): rows that fail feature parsing stop the run; quarantine them
        # instead so that rows_in = rows_scored + rows_quarantined on bad logs.
        "rows_quarantined": 0,
        "rows_per_class": summary_counts,
        "attack_share": attacks / rows_in if rows_in else 0.0,
        "seconds": round(elapsed, 2),
        "rows_per_s": rows_in / elapsed if elapsed > 0 else None,
        "input_files": len(files),
        "input_fingerprint": _fingerprint(files, storage, input_uri),
        "scored_at": scored_at,
        "alert": None,
    }
    if alert_attack_share is not None and summary["attack_share"] > alert_attack_share:
        summary["alert"] = (
            f"ALERT: {summary['attack_share']:.2%} of {rows_in:,} rows predicted as attacks "
            f"(threshold {alert_attack_share:.2%}) in {partition or input_uri}"
        )
        logger.warning(summary["alert"])
    # Publish: the manifest goes in last, then the directory replaces the old output.
    storage.write_bytes(join(staging, SUMMARY_MD), summary_markdown(summary).encode())
    storage.write_json(join(staging, SUCCESS), summary)
    storage.move_dir(staging, target)
    logger.info(
        "scored %d rows in %.1f s (%.0f rows/s) -> %s",
        rows_in,
        elapsed,
        summary["rows_per_s"] or 0,
        target,
    )
    return summary


def _fingerprint(files: list[str], storage: Storage, input_uri: str) -> str:
    """A digest of the input files' names, sizes and modification times."""
    import hashlib

    fs, _ = storage.filesystem(input_uri)
    digest = hashlib.sha256()
    for info in fs.get_file_info(files):
        digest.update(f"{info.path}|{info.size}|{info.mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def summary_markdown(summary: dict[str, Any]) -> str:
    """The night's summary for people: rows per class, attack share, throughput."""
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
        f"{summary['attack_share']:.2%}; {summary['rows_per_s'] or 0:,.0f} rows/s.",
        "",
        "| predicted class | rows |",
        "|---|---:|",
    ]
    lines += [
        f"| {name} | {count:,} |" for name, count in summary["rows_per_class"].items()
    ]
    return "\n".join(lines) + "\n"
