"""A user's own table, declared in YAML, trains, scores and answers like a built-in one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from iids.config import TrainSettings
from iids.quickstart import quickstart
from iids.scoring import Scorer

SCHEMA = """\
name: plant-a
features:
  - {name: pressure, kind: numeric}
  - {name: register, kind: numeric, base: 16, integer: true}
  - {name: protocol, kind: categorical}
drop: [timestamp]
label: attack_type
classes: [normal, scan, flood]
"""


def _plant_table(n: int, seed: int = 0) -> pa.Table:
    """Readings where each class has its own pressure level, registers and protocols."""
    rng = np.random.default_rng(seed)
    cls = rng.choice(3, size=n, p=[0.8, 0.12, 0.08])
    pressure = np.array([1.0, 4.0, 8.0])[cls] + rng.normal(0, 0.4, n)
    register = np.array([16, 512, 4096])[cls] + rng.integers(0, 8, n)
    protocol = np.array(["modbus", "mqtt", "http"])[(cls + (rng.random(n) < 0.1)) % 3]
    return pa.table(
        {
            "pressure": pressure.round(3).astype(str),
            "register": [f"{r:x}" for r in register],
            "protocol": protocol,
            "timestamp": [
                f" 2026-12-0{1 + i % 3}T00:00:{i % 60:02d} " for i in range(n)
            ],
            "attack_type": np.array(["normal", "scan", "flood"])[cls],
        }
    )


def test_generic_table_trains_and_scores(ray_session, tmp_path: Path):
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "raw").mkdir()
    pacsv.write_csv(_plant_table(6000), tmp_path / "raw" / "plant.csv")
    settings = TrainSettings(
        dataset="generic",
        schema_file=str(tmp_path / "schema.yaml"),
        protocol="paper",
        epochs=3,
        learning_rate=0.005,
        batch_size=512,
        min_rows_per_epoch=20_000,
        baseline_max_iter=20,
    )
    out = tmp_path / "run"
    summary = quickstart(str(tmp_path / "raw"), str(out), settings)

    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "plant-a"
    assert report["classes"] == ["normal", "scan", "flood"]
    assert report["macro_f1"] >= 0.95, report["per_class"]
    predictions = pads.dataset(out / "predictions", format="parquet").to_table()
    assert predictions.num_rows == report["rows"]["test"] == summary["rows_scored"]

    # The bundle carries the schema: raw text rows (as an HTTP client sends) score.
    scorer = Scorer.from_uri(summary["model_bundle"])
    rows = pa.table(
        {
            "pressure": ["1.1", "8.2"],
            "register": ["12", "1003"],
            "protocol": ["modbus", "http"],
        }
    )
    codes, _ = scorer.score(rows)
    assert [scorer.classes[c] for c in codes] == ["normal", "flood"]
