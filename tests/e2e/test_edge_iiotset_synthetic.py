"""The Edge-IIoTset 15-class model through the same pipeline, on synthetic raw captures."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads

from iids.config import ModelSettings, SamplingSettings, TrainSettings
from iids.quickstart import quickstart
from iids.synth import synth


def test_edge_iiotset_trains_evaluates_and_scores(ray_session, tmp_path: Path):
    raw = tmp_path / "raw"
    synth("edge-iiotset", 20_000, 7, raw)
    settings = TrainSettings(
        dataset="edge-iiotset",
        task="attack",
        protocol="paper",
        epochs=3,
        patience=3,
        learning_rate=0.004,
        batch_size=512,
        num_workers=2,
        min_rows_per_epoch=0,
        baseline_max_iter=10,
        model=ModelSettings(strides=(2, 2)),
        sampling=SamplingSettings(ratio=0.1),
    )
    out = tmp_path / "run"
    summary = quickstart(str(raw), str(out), settings)

    manifest = json.loads((out / "data" / "_manifest.json").read_text())
    assert manifest["rows_read"] == 20_000 == manifest["rows_written"]

    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "edge-iiotset"
    assert len(report["classes"]) == 15 and "Fingerprinting" in report["classes"]
    majority_share = max(m["support"] for m in report["per_class"].values()) / sum(
        m["support"] for m in report["per_class"].values()
    )
    assert report["accuracy"] > majority_share  # better than always "Normal"
    # Always answering "Normal" would score a macro-F1 of about 0.06 on 15 classes.
    assert report["macro_f1"] > 0.25, report["per_class"]

    predictions = pads.dataset(out / "predictions", format="parquet").to_table()
    assert predictions.num_rows == report["rows"]["test"] == summary["rows_scored"]
    assert set(predictions["predicted_class"].to_pylist()) <= set(report["classes"])
