"""Small seeded data builders shared by the tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def can_rows(n: int, seed: int = 0) -> pa.Table:
    """`n` typed CICIoV2024 rows (as ingest writes them) over all six classes."""
    rng = np.random.default_rng(seed)
    classes = ["BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL"]
    specific = np.asarray(classes, dtype=object)[np.arange(n) % len(classes)]
    ids = np.where(specific == "BENIGN", rng.integers(100, 1200, n), 0)
    ids = ids + np.asarray([0, 291, 513, 476, 344, 128])[np.arange(n) % 6]
    columns = {"ID": pa.array(ids.astype(np.float64))}
    for i in range(8):
        columns[f"DATA_{i}"] = pa.array(rng.integers(0, 256, n).astype(np.float64))
    columns["label"] = pa.array(np.where(specific == "BENIGN", "BENIGN", "ATTACK"))
    category = np.where(
        specific == "BENIGN", "BENIGN", np.where(specific == "DoS", "DoS", "SPOOFING")
    )
    columns["category"] = pa.array(category)
    columns["specific_class"] = pa.array(specific.astype(str))
    return pa.table(columns)
