"""The main job: ingest, train, evaluate, save and batch-score, end to end on a local Ray.

It calls the same functions as `iids ingest`, `iids train` and `iids score`; there is no
second code path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from iids.batch import score_dataset
from iids.config import TrainSettings
from iids.ingest import ingest
from iids.storage import Storage, join
from iids.train import train

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = "runs/quickstart"
REPORT_FILES = (
    "report.json",
    "report.md",
    "confusion_matrix.png",
    "training_curves.png",
    "class_counts.png",
)


def quickstart(
    data: str,
    output_dir: str,
    settings: TrainSettings,
    *,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on raw files and return a summary of what it wrote.

    Args:
        data: raw CSV/Parquet files or a folder of them.
        output_dir: everything goes under here (`data/`, `models/`, `splits/`,
            `predictions/`, the report and its plots).
        settings: training settings (dataset, task, protocol, epochs, ...).
        storage: where `output_dir` lives.
    """
    storage = storage or Storage()
    started = time.perf_counter()
    steps: dict[str, float] = {}

    # 1. Ingest raw files into partitioned Parquet.
    t = time.perf_counter()
    adapter = settings.adapter()
    data_uri = join(output_dir, "data")
    manifest = ingest(adapter, [data], data_uri, storage=storage)
    steps["ingest_s"] = time.perf_counter() - t

    # 2-5. Split, balance, train, evaluate, save the bundle.
    t = time.perf_counter()
    outcome = train(
        data_uri,
        join(output_dir, "models"),
        settings,
        storage=storage,
        splits_uri=join(output_dir, "splits"),
    )
    steps["train_s"] = time.perf_counter() - t
    for name in REPORT_FILES:
        blob = storage.read_bytes(join(outcome.bundle_uri, name))
        storage.write_bytes(join(output_dir, name), blob)

    # 6. Batch-score the test split with the saved bundle, one actor per CPU (as
    # `iids score` does).
    t = time.perf_counter()
    assert outcome.test_split_uri is not None
    scoring = score_dataset(
        outcome.bundle_uri,
        outcome.test_split_uri,
        join(output_dir, "predictions"),
        storage=storage,
        num_actors=None,
    )
    steps["score_s"] = time.perf_counter() - t
    if scoring["rows_scored"] != outcome.report["rows"]["test"]:
        raise RuntimeError(
            f"batch scoring wrote {scoring['rows_scored']} predictions for "
            f"{outcome.report['rows']['test']} test rows"
        )

    report = outcome.report
    summary = {
        "output": os.path.abspath(output_dir)
        if not output_dir.startswith("s3://")
        else output_dir,
        "dataset": report["dataset"],
        "task": report["task"],
        "protocol": report["protocol"],
        "rows_read": manifest["rows_read"],
        "rows_quarantined": manifest["rows_quarantined"],
        "macro_f1": report["macro_f1"],
        "accuracy": report["accuracy"],
        "fpr": report["fpr"],
        "latency_us_per_row": report["latency_us_per_row"],
        "baseline_macro_f1": (report.get("baseline") or {}).get("macro_f1"),
        "epochs_run": report["training"]["epochs_run"],
        "model_bundle": outcome.bundle_uri,
        "predictions": scoring["output"],
        "rows_scored": scoring["rows_scored"],
        "scoring_rows_per_s": scoring["rows_per_s"],
        "seconds": {
            **{k: round(v, 1) for k, v in steps.items()},
            "total_s": round(time.perf_counter() - started, 1),
        },
        "files": {
            "data": data_uri,
            "report": join(output_dir, "report.md"),
            "report_json": join(output_dir, "report.json"),
            "confusion_matrix": join(output_dir, "confusion_matrix.png"),
            "test_split": outcome.test_split_uri,
        },
    }
    storage.write_json(join(output_dir, "summary.json"), summary)
    return summary


def default_data() -> str | None:
    """The real CICIoV2024 decimal files, when they are where the docs say."""
    from iids.config import data_dir

    path = Path(data_dir()) / "ciciov2024" / "decimal"
    return str(path) if path.is_dir() else None
