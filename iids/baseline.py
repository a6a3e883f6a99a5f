"""The gradient-boosted-tree baseline, trained on the same split and features.

scikit-learn's `HistGradientBoostingClassifier` (after LightGBM): a strong, fast tabular
model that any deep detector has to beat to be worth its cost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from iids.evaluate import classification_metrics

logger = logging.getLogger(__name__)


def fit_baseline(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    negative_class: str,
    seed: int = 0,
    max_iter: int = 50,
) -> dict[str, Any]:
    """Fit the tree model and return the report's metrics for it on the test split.

    Args:
        X_train, X_test: float32 features, shapes (N, F) and (M, F).
        y_train, y_test: int64 class codes.
        classes: class names by code.
        negative_class: the benign class.
        seed: seeds the model.
        max_iter: boosting rounds.

    Returns:
        The metrics of `classification_metrics`, plus `fit_s`, `rows_per_s` (predict)
        and `latency_us_per_row`.
    """
    started = time.perf_counter()
    model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - started

    started = time.perf_counter()
    proba = model.predict_proba(X_test)
    predict_s = time.perf_counter() - started
    full = np.zeros((len(X_test), len(classes)), dtype=np.float64)
    full[:, model.classes_] = proba
    metrics = classification_metrics(
        y_test, full.argmax(axis=1), full, classes, negative_class
    )
    rows_per_s = len(X_test) / predict_s if predict_s > 0 else None
    metrics.update(
        {
            "model": f"HistGradientBoostingClassifier(max_iter={max_iter})",
            "fit_s": round(fit_s, 2),
            "rows_per_s": rows_per_s,
            "latency_us_per_row": 1e6 / rows_per_s if rows_per_s else None,
        }
    )
    logger.info(
        "baseline: macro-F1 %.4f, fit %.1f s, predict %.0f rows/s",
        metrics["macro_f1"],
        fit_s,
        rows_per_s or 0,
    )
    return metrics
