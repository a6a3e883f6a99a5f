"""Class balancing of the training split: majority undersampling, then SMOTE per class.

SMOTE (Chawla et al., JAIR 2002, as implemented by imbalanced-learn) synthesises a minority
row by interpolating between a row and one of its k nearest neighbours of the same class. As
a class needs only its own rows, each minority class is synthesised in its own Ray task: the
per-class counts equal what single-process imbalanced-learn produces with the same
`sampling_strategy`, and the work spreads over the cluster.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """How the training split is balanced.

    Attributes:
        strategy: `ratio` raises every minority class to `ratio` x the majority count;
            `balance` raises every class to the majority count; `per_class` uses
            `targets`; `none` leaves the split as it is.
        ratio: for `ratio`, in (0, 1].
        targets: for `per_class`, rows wanted per class name (never fewer than present).
        majority_cap: undersample the largest class to at most this many rows first
            (None keeps them all).
        k_neighbors: SMOTE's k; lowered for classes with fewer rows.
        max_memory_mb: refuse to synthesise more than this much feature data.
        seed: seeds undersampling and synthesis.
    """

    strategy: Literal["ratio", "balance", "per_class", "none"] = "ratio"
    ratio: float = 0.25
    targets: dict[str, int] = field(default_factory=dict)
    majority_cap: int | None = 100_000
    k_neighbors: int = 5
    max_memory_mb: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy == "ratio" and not 0 < self.ratio <= 1:
            raise ValueError(f"sampling ratio must be in (0, 1], got {self.ratio}")
        if self.majority_cap is not None and self.majority_cap < 1:
            raise ValueError(f"majority_cap must be positive, got {self.majority_cap}")
        if self.k_neighbors < 1:
            raise ValueError(f"k_neighbors must be at least 1, got {self.k_neighbors}")


@dataclass(frozen=True)
class SamplingReport:
    """Rows per class before and after balancing, synthetic rows, and the time taken."""

    before: dict[str, int]
    after: dict[str, int]
    synthetic_rows: int
    seconds: float

    def to_dict(self) -> dict:
        return {
            "before": self.before,
            "after": self.after,
            "synthetic_rows": self.synthetic_rows,
            "seconds": round(self.seconds, 3),
        }


def targets_for(
    counts: np.ndarray, config: SamplingConfig, classes: list[str]
) -> np.ndarray:
    """Rows wanted per class code after balancing, given the counts after undersampling."""
    majority = counts.max()
    if config.strategy == "none":
        return counts.copy()
    if config.strategy == "balance":
        wanted = np.full_like(counts, majority)
    elif config.strategy == "ratio":
        wanted = np.full_like(counts, round(float(config.ratio * majority)))
    else:
        unknown = sorted(set(config.targets) - set(classes))
        if unknown:
            raise ValueError(
                f"sampling targets name unknown classes {unknown}; classes: {classes}"
            )
        wanted = np.array(
            [config.targets.get(c, 0) for c in classes], dtype=counts.dtype
        )
    return np.maximum(counts, wanted)


def balance(
    X: np.ndarray,
    y: np.ndarray,
    config: SamplingConfig,
    classes: list[str],
    *,
    distributed: bool = True,
) -> tuple[np.ndarray, np.ndarray, SamplingReport]:
    """Undersample the majority class, then SMOTE every class below its target.

    Args:
        X: float32 training features, shape (N, F); must be finite.
        y: int64 class codes, shape (N,).
        config: the sampling strategy.
        classes: class names by code.
        distributed: one Ray task per class (True) or all in this process.

    Returns:
        (X_res, y_res, report): original rows first, synthetic rows after.

    Raises:
        ValueError: X holds NaN or infinity (naming the feature column), or the
            synthetic rows would exceed `config.max_memory_mb`.
    """
    started = time.perf_counter()
    if not np.isfinite(X).all():
        col = int(np.flatnonzero(~np.isfinite(X).all(axis=0))[0])
        raise ValueError(
            f"SMOTE needs finite features; feature column {col} holds NaN or infinity. "
            "Quarantine or impute such rows at ingest."
        )
    before = np.bincount(y, minlength=len(classes))

    # Undersample the largest class first: SMOTE targets follow from what remains.
    majority = int(before.argmax())
    if config.majority_cap is not None and before[majority] > config.majority_cap:
        rng = np.random.default_rng(config.seed)
        rows = np.flatnonzero(y == majority)
        dropped = rng.choice(rows, size=len(rows) - config.majority_cap, replace=False)
        keep = np.ones(len(y), dtype=bool)
        keep[dropped] = False
        X, y = X[keep], y[keep]
    counts = np.bincount(y, minlength=len(classes))
    wanted = targets_for(counts, config, classes)

    # Refuse before allocating what will not fit.
    new_rows = int((wanted - counts).sum())
    need_mb = new_rows * X.shape[1] * X.itemsize / 2**20
    if need_mb > config.max_memory_mb:
        raise ValueError(
            f"SMOTE would synthesise {new_rows:,} rows ({need_mb:,.0f} MB), above "
            f"max_memory_mb={config.max_memory_mb}. Lower sampling.ratio, set "
            "sampling.majority_cap, or raise sampling.max_memory_mb."
        )

    # Synthesise each short class on its own.
    jobs = [
        (c, int(wanted[c] - counts[c]))
        for c in range(len(classes))
        if wanted[c] > counts[c]
    ]
    # Each class's task gets that class's rows and one row of another class, not all
    # of X: the short classes are the small ones.
    work = [
        (X[y == c], X[np.flatnonzero(y != c)[:1]], c, n, config, classes[c])
        for c, n in jobs
    ]
    if distributed and jobs:
        import ray

        task = ray.remote(num_cpus=1)(_synthesise)
        synthetic = ray.get([task.remote(*args) for args in work])
    else:
        synthetic = [_synthesise(*args) for args in work]
    del work

    X_res = np.concatenate([X, *synthetic]) if synthetic else X
    y_res = np.concatenate([y, *[np.full(n, c, dtype=y.dtype) for c, n in jobs]])
    report = SamplingReport(
        before={classes[i]: int(v) for i, v in enumerate(before)},
        after={
            classes[i]: int(v)
            for i, v in enumerate(np.bincount(y_res, minlength=len(classes)))
        },
        synthetic_rows=sum(n for _, n in jobs),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "balanced training split in %.1f s: %s -> %s",
        report.seconds,
        report.before,
        report.after,
    )
    return X_res.astype(np.float32, copy=False), y_res, report


def _synthesise(
    rows: np.ndarray,
    foreign: np.ndarray,
    code: int,
    n_new: int,
    config: SamplingConfig,
    name: str,
) -> np.ndarray:
    """`n_new` synthetic rows of one class, from that class's rows only.

    Args:
        rows: the class's rows, shape (n, F).
        foreign: at most one row of another class, shape (0 or 1, F).
    """
    from imblearn.over_sampling import SMOTE

    # Interpolate between distinct rows: neighbours that are copies add nothing.
    own = np.unique(rows, axis=0)
    rng = np.random.default_rng(config.seed + code)
    if len(own) < 2:
        logger.warning(
            "class %s has 1 distinct row; duplicating it instead of SMOTE", name
        )
        return own[rng.integers(0, len(own), size=n_new)]
    k = min(config.k_neighbors, len(own) - 1)
    if k < config.k_neighbors:
        logger.warning(
            "class %s has %d distinct rows; SMOTE k lowered from %d to %d",
            name,
            len(own),
            config.k_neighbors,
            k,
        )

    # imbalanced-learn wants two classes; a single foreign row stands in for the rest
    # and is never a neighbour (SMOTE searches neighbours within the class).
    other = foreign if len(foreign) else own[:1] + 1.0
    X_fit = np.concatenate([own, other])
    y_fit = np.concatenate(
        [np.ones(len(own), dtype=np.int64), np.zeros(1, dtype=np.int64)]
    )
    smote = SMOTE(
        sampling_strategy={1: len(own) + n_new},
        k_neighbors=k,
        random_state=config.seed + code,
    )
    X_out, _ = smote.fit_resample(X_fit, y_fit)
    return X_out[len(X_fit) :].astype(rows.dtype, copy=False)
