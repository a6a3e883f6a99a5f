"""Ray Train checkpoints: a rerun with the same run name resumes, never retrains."""

from __future__ import annotations

import numpy as np

from iids.config import TrainSettings
from iids.storage import Storage
from iids.train import _fit
from tests.builders import can_rows, fitted_preprocessor


def test_rerun_with_the_same_name_resumes_after_the_last_epoch(ray_session, tmp_path):
    rows = can_rows(3000, seed=3)
    pre = fitted_preprocessor(rows)
    X = pre.transform(rows)
    y = np.arange(len(X)) % 6
    settings = TrainSettings(
        epochs=2, batch_size=256, patience=5, num_workers=2, mixed_precision=True
    )
    args = (X[:2400], y[:2400], X[2400:], y[2400:])
    common = dict(
        preprocessor=pre,
        num_classes=6,
        output_uri=str(tmp_path),
        run_name="resume-me",
        storage=Storage(),
    )

    first, _, epochs_first = _fit(*args, settings, **common)
    assert epochs_first == 2 and [h["epoch"] for h in first] == [1, 2]

    longer = settings.model_copy(update={"epochs": 3})
    history, best, epochs = _fit(*args, longer, **common)
    assert epochs == 3
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # Epochs 1 and 2 come from the checkpoint, untouched: they were not trained again.
    assert history[:2] == first
    assert set(best) and all(
        np.isfinite(v.float().numpy()).all() for v in best.values()
    )
