"""Nightly batch scoring: one prediction per row, published once, reruns replace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from iids.batch import SUCCESS, score_dataset
from iids.datasets import get_adapter
from iids.ingest import ingest
from iids.scoring import Scorer
from tests.builders import can_csv, tiny_bundle

DAY = "2026-12-02"


@pytest.fixture(scope="module")
def logs(ray_session, tmp_path_factory) -> tuple[Path, str]:
    """Two nights of CAN logs (day partitions) and an untrained bundle."""
    root = tmp_path_factory.mktemp("nightly")
    adapter = get_adapter("ciciov2024")
    can_csv(root / "raw" / DAY / "can.csv", 5000, seed=1)
    can_csv(root / "raw" / "2026-12-01" / "can.csv", 700, seed=2)
    for day in (DAY, "2026-12-01"):
        ingest(adapter, [str(root / "raw" / day)], str(root / "logs"), day=day)
    (root / "raw" / "empty").mkdir()
    (root / "raw" / "empty" / "can.csv").write_text(
        ",".join(adapter.column_names) + "\n"
    )
    ingest(adapter, [str(root / "raw" / "empty")], str(root / "logs"), day="2026-12-03")
    return root, tiny_bundle(root / "models")


def _predictions(path: Path):
    return pads.dataset(path, format="parquet").to_table()


def test_one_prediction_per_row_and_a_rerun_replaces(logs):
    root, bundle = logs
    out = root / "predictions"
    first = score_dataset(bundle, str(root / "logs"), str(out), day=DAY)
    assert first["rows_in"] == first["rows_scored"] == 5000
    again = score_dataset(bundle, str(root / "logs"), str(out), day=DAY)
    table = _predictions(out / f"day={DAY}")
    assert table.num_rows == 5000 == again["rows_scored"]
    assert len(set(table["row_key"].to_pylist())) == 5000
    manifest = json.loads((out / f"day={DAY}" / SUCCESS).read_text())
    assert manifest["rows_scored"] == 5000
    assert manifest["input_fingerprint"] == first["input_fingerprint"]
    assert (out / f"day={DAY}" / "_summary.md").read_text().count("|") > 6
    assert not list(out.glob("*.staging-*"))
    # Only the night asked for was read.
    assert "day=2026-12-01" not in {p.name for p in out.iterdir()}


def test_predictions_equal_the_scoring_core_on_the_same_rows(logs):
    root, bundle = logs
    out = root / "predictions-core"
    score_dataset(bundle, str(root / "logs"), str(out), day="2026-12-01")
    batch = _predictions(out / "day=2026-12-01").sort_by("row_key")
    rows = pads.dataset(
        root / "logs" / "day=2026-12-01", format="parquet", partitioning="hive"
    ).to_table()
    scorer = Scorer.from_uri(bundle)
    codes, proba = scorer.score(rows)
    keys = [
        f"{f}:{line}"
        for f, line in zip(
            rows["source_file"].to_pylist(),
            rows["source_line"].to_pylist(),
            strict=True,
        )
    ]
    order = np.argsort(keys)
    expected = np.asarray(scorer.classes)[codes][order]
    assert batch["predicted_class"].to_pylist() == expected.tolist()
    np.testing.assert_allclose(
        batch["probability"].to_numpy(), proba[order, codes[order]], rtol=1e-5
    )


def test_empty_day_gives_a_zero_row_summary(logs):
    root, bundle = logs
    summary = score_dataset(
        bundle, str(root / "logs"), str(root / "p"), day="2026-12-03"
    )
    assert summary["rows_in"] == summary["rows_scored"] == 0
    assert (root / "p" / "day=2026-12-03" / SUCCESS).is_file()


def test_missing_day_is_a_clear_error(logs):
    root, bundle = logs
    with pytest.raises(FileNotFoundError, match=r"no partition 'day=2026-11-30'"):
        score_dataset(bundle, str(root / "logs"), str(root / "p"), day="2026-11-30")
    with pytest.raises(ValueError, match="day must be a date written YYYY-MM-DD"):
        score_dataset(bundle, str(root / "logs"), str(root / "p"), day="yesterday")


def test_alert_threshold_flags_the_night(logs):
    root, bundle = logs
    summary = score_dataset(
        bundle, str(root / "logs"), str(root / "alert"), day=DAY, alert_attack_share=0.0
    )
    assert summary["attack_share"] > 0
    assert summary["alert"].startswith("ALERT: ")
    assert f"day={DAY}" in summary["alert"]
