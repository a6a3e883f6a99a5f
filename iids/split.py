"""Train / validation / test splits under the two evaluation protocols.

- `paper`: a stratified random split with duplicate rows kept, comparable with published
  numbers on these datasets (which mostly come from such splits).
- `honest`: duplicate rows (same features and label) removed before a stratified split, so no
  test row also occurs in train; rows whose features repeat with different labels are counted.

Both report `train_test_overlap`, the number of test rows whose feature vector also occurs in
the training split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

PROTOCOLS = ("honest", "paper")


@dataclass(frozen=True)
class Split:
    """Row indices of each part, into the table the split was made from.

    Attributes:
        train, val, test: int64 row indices.
        duplicates_removed: rows dropped as exact duplicates (honest protocol).
        conflicting_features: distinct feature vectors seen with more than one label.
        train_test_overlap: test rows whose features also occur in train.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    duplicates_removed: int
    conflicting_features: int
    train_test_overlap: int


def split_rows(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    protocol: str = "honest",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Split:
    """Split rows into train, validation and test, stratified by label.

    Every class with at least two rows gets at least one test row, and one with at least
    three rows one validation row too; the rest goes to train.

    Args:
        features: raw feature values, shape (N, F); equal rows are duplicates.
        labels: int64 class codes, shape (N,).
        protocol: `honest` (duplicates removed first) or `paper` (kept).
        val_fraction, test_fraction: shares of each class's rows.
        seed: seeds the shuffle.
        groups: optional group of each row (a source file, a capture day), shape (N,):
            no group spans two parts.

    Raises:
        ValueError: an unknown protocol or fractions that leave no training rows.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1) or (
        val_fraction + test_fraction >= 1
    ):
        raise ValueError(
            "val_fraction and test_fraction must be in (0, 1) with a sum below 1, got "
            f"{val_fraction} and {test_fraction}"
        )

    # Identify rows by feature vector, and by (features, label).
    feature_ids = _row_ids(features)
    pair_ids = _row_ids(np.column_stack([feature_ids, labels]))
    _, first_pair = np.unique(pair_ids, return_index=True)
    conflicting = int((np.bincount(feature_ids[first_pair]) > 1).sum())

    # Honest: drop duplicates, and keep each feature vector inside one part.
    keep = np.arange(len(labels))
    if protocol == "honest":
        keep = np.sort(first_pair)
    units = _units(
        feature_ids[keep] if protocol == "honest" else None,
        None if groups is None else np.asarray(groups)[keep],
        len(keep),
    )
    duplicates_removed = len(labels) - len(keep)
    train, val, test = _stratified(
        keep, units, labels[keep], val_fraction, test_fraction, seed
    )

    overlap = train_test_overlap(features, train, test)
    if protocol == "honest":
        assert overlap == 0, "honest split leaked test rows into train"
    logger.info(
        "%s split: %d train, %d val, %d test; %d duplicates removed, %d feature vectors "
        "with conflicting labels, %d test rows also in train",
        protocol,
        len(train),
        len(val),
        len(test),
        duplicates_removed,
        conflicting,
        overlap,
    )
    return Split(train, val, test, duplicates_removed, conflicting, overlap)


def train_test_overlap(
    features: np.ndarray, train: np.ndarray, test: np.ndarray
) -> int:
    """How many test rows have a feature vector that also occurs in train.

    Args:
        features: raw feature values, shape (N, F).
        train, test: row indices into `features`.
    """
    ids = _row_ids(features)
    return int(np.isin(ids[test], ids[train]).sum())


def _units(
    feature_ids: np.ndarray | None, groups: np.ndarray | None, n: int
) -> np.ndarray:
    """Rows that must stay together: joined by equal features and by equal group."""
    if feature_ids is None and groups is None:
        return np.arange(n)
    if groups is None:
        return feature_ids
    group_ids = np.unique(groups, return_inverse=True)[1]
    if feature_ids is None:
        return group_ids
    # A feature vector seen in two groups joins them: connected components of the
    # bipartite graph (feature vector, group).
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_features = int(feature_ids.max()) + 1
    n_groups = int(group_ids.max()) + 1
    graph = coo_matrix(
        (np.ones(n), (feature_ids, n_features + group_ids)),
        shape=(n_features + n_groups, n_features + n_groups),
    )
    _, component = connected_components(graph, directed=False)
    return component[feature_ids]


def _stratified(
    rows: np.ndarray,
    groups: np.ndarray,
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign whole groups to parts, stratified by each group's first label."""
    uniq, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    group_labels = labels[first]
    rng = np.random.default_rng(seed)
    part_of_group = np.zeros(len(uniq), dtype=np.int8)  # 0 train, 1 val, 2 test
    for cls in np.unique(group_labels):
        members = rng.permutation(np.flatnonzero(group_labels == cls))
        n = len(members)
        n_test = max(1, round(n * test_fraction)) if n >= 2 else 0
        n_val = max(1, round(n * val_fraction)) if n - n_test >= 2 else 0
        part_of_group[members[:n_test]] = 2
        part_of_group[members[n_test : n_test + n_val]] = 1
    part = part_of_group[inverse]
    return rows[part == 0], rows[part == 1], rows[part == 2]


def _row_ids(matrix: np.ndarray) -> np.ndarray:
    """An int64 id per row; equal rows share an id."""
    contiguous = np.ascontiguousarray(matrix)
    view = contiguous.view(
        np.dtype((np.void, contiguous.dtype.itemsize * matrix.shape[1]))
    )
    _, ids = np.unique(view.ravel(), return_inverse=True)
    return ids.astype(np.int64)
