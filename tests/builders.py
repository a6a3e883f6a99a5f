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


def tiny_bundle(root, rows: pa.Table | None = None, seed: int = 0) -> str:
    """An untrained CICIoV2024 bundle (real code path, random weights) under `root`."""
    import torch

    from iids.bundle import new_version, save_bundle
    from iids.datasets import get_adapter
    from iids.model import HybridConfig, HybridIDS

    rows = rows if rows is not None else can_rows(300, seed)
    adapter = get_adapter("ciciov2024")
    pre = fitted_preprocessor(rows)
    torch.manual_seed(seed)
    model = HybridIDS(pre.num_features, 6, HybridConfig()).eval()
    return save_bundle(
        str(root),
        new_version(),
        state_dict=model.state_dict(),
        model_config=HybridConfig(),
        num_features=pre.num_features,
        preprocessor=pre,
        adapter=adapter,
        task=adapter.task("specific"),
        config={"seed": seed},
    )


def fitted_preprocessor(rows: pa.Table):
    """A CICIoV2024 preprocessor fitted on `rows` with numpy."""
    from iids.datasets import get_adapter
    from iids.preprocess import Preprocessor

    columns = get_adapter("ciciov2024").numeric_features
    matrix = np.column_stack([rows[c].to_numpy() for c in columns])
    return Preprocessor(
        numeric=columns,
        means=matrix.mean(axis=0).tolist(),
        stds=matrix.std(axis=0).tolist(),
        bases=[10] * len(columns),
        integer=columns,
    )


def can_csv(path, n: int, seed: int = 0, rows: pa.Table | None = None) -> None:
    """`n` CICIoV2024 rows (or `rows`) as a raw decimal CSV export."""
    import pyarrow.csv as pacsv

    rows = can_rows(n, seed) if rows is None else rows
    ints = pa.table(
        {
            c: rows[c].cast(pa.int64()) if c[:2] in ("ID", "DA") else rows[c]
            for c in rows.column_names
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(ints, path)
