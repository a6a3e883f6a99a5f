"""What Ray Train's workers are handed: the training rows with the classes mixed."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

import iids.train
from iids.config import TrainSettings
from iids.datasets import get_adapter
from iids.ingest import ingest
from tests.builders import can_csv, can_rows


class _Handed(Exception):
    """Raised by the stand-in for Ray Train, carrying what it was handed."""


def test_rows_sorted_by_class_are_trained_in_mixed_batches(
    ray_session, tmp_path, monkeypatch
):
    # One class after another, as in a dataset stored one class per file.
    rows = can_rows(6000, seed=4)
    rows = rows.take(pc.sort_indices(rows, [("specific_class", "ascending")]))
    can_csv(tmp_path / "raw" / "can.csv", 0, rows=rows)
    ingest(get_adapter("ciciov2024"), [str(tmp_path / "raw")], str(tmp_path / "data"))

    def handed(X_train, y_train, *args, **kwargs):
        raise _Handed(y_train)

    monkeypatch.setattr(iids.train, "_fit", handed)
    settings = TrainSettings(
        dataset="ciciov2024", task="specific", protocol="paper", baseline=False
    )
    with pytest.raises(_Handed) as caught:
        iids.train.train(str(tmp_path / "data"), str(tmp_path / "models"), settings)
    y = caught.value.args[0]

    # Every class is trained on, and a batch of 256 rows holds several classes:
    # unshuffled, nearly every batch would hold one.
    assert set(np.unique(y)) == set(range(6))
    batches = [y[i : i + 256] for i in range(0, len(y) - 255, 256)]
    mixed = np.mean([len(np.unique(batch)) >= 4 for batch in batches])
    assert mixed > 0.95, f"only {mixed:.0%} of batches hold 4 or more classes"
