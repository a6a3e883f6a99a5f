"""The main job end to end on a stratified sample of the real CICIoV2024 files."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pytest

from iids.config import TrainSettings
from iids.quickstart import quickstart

FILES = (
    "decimal_benign.csv.gz",
    "decimal_DoS.csv",
    "decimal_spoofing-GAS.csv",
    "decimal_spoofing-RPM.csv",
    "decimal_spoofing-SPEED.csv",
    "decimal_spoofing-STEERING_WHEEL.csv",
)


@pytest.fixture(scope="module")
def real_sample(data_dir: Path, tmp_path_factory) -> Path:
    """1% of every real file (at least 1,500 rows each), seeded, same file names."""
    source = data_dir / "ciciov2024" / "decimal"
    if not source.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real CICIoV2024 files are missing from {source}")
        pytest.skip(f"real CICIoV2024 files not found under {source} (IIDS_DATA_DIR)")
    out = tmp_path_factory.mktemp("ciciov2024-sample")
    rng = np.random.default_rng(0)
    for name in FILES:
        table = pacsv.read_csv(source / name)
        n = max(1500, table.num_rows // 100)
        rows = np.sort(
            rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False)
        )
        sample = table.take(rows)
        if name.endswith(".gz"):
            with gzip.open(out / name, "wb") as f:
                pacsv.write_csv(sample, f)
        else:
            pacsv.write_csv(sample, out / name)
    return out


def test_quickstart_on_real_sample(ray_session, real_sample: Path, tmp_path: Path):
    settings = TrainSettings(
        dataset="ciciov2024",
        task="specific",
        protocol="paper",
        epochs=8,
        patience=3,
        learning_rate=0.005,
        batch_size=512,
        num_workers=2,
        baseline_max_iter=30,
    )
    out = tmp_path / "run"
    summary = quickstart(str(real_sample), str(out), settings)

    # Every row read was written (the real files are clean).
    manifest = json.loads((out / "data" / "_manifest.json").read_text())
    assert manifest["rows_read"] == manifest["rows_written"] > 19_000
    assert manifest["rows_quarantined"] == 0

    # The model detects the six classes.
    report = json.loads((out / "report.json").read_text())
    assert report["macro_f1"] >= 0.95, report["per_class"]
    for key in (
        "dataset",
        "task",
        "protocol",
        "rows",
        "classes",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "per_class",
        "fpr",
        "loss",
        "latency_us_per_row",
        "confusion_matrix",
        "baseline",
        "model_bundle",
        "scored_rows",
    ):
        assert key in report, key
    assert report["classes"] == [
        "BENIGN",
        "DoS",
        "GAS",
        "RPM",
        "SPEED",
        "STEERING_WHEEL",
    ]
    assert report["protocol"] == "paper"

    # One prediction per test row, each with a key, a class and the model version.
    predictions = pads.dataset(out / "predictions", format="parquet").to_table()
    assert predictions.num_rows == report["rows"]["test"] == summary["rows_scored"]
    assert len(set(predictions["row_key"].to_pylist())) == predictions.num_rows
    assert set(predictions["model_version"].to_pylist()) == {report["model_version"]}
    assert set(predictions["predicted_class"].to_pylist()) <= set(report["classes"])
    assert (out / "predictions" / "_SUCCESS").is_file()
    for name in ("report.md", "confusion_matrix.png", "training_curves.png"):
        assert (out / name).stat().st_size > 0
