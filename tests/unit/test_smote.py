import numpy as np
import pytest

from iids.smote import SamplingConfig, balance

CLASSES = ["benign", "three", "one", "fifty"]


def _data():
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [
            rng.normal(size=(1000, 4)),
            rng.normal(size=(3, 4)) + 5,
            rng.normal(size=(1, 4)) - 5,
            rng.normal(size=(50, 4)),
        ]
    ).astype(np.float32)
    y = np.array([0] * 1000 + [1] * 3 + [2] + [3] * 50)
    return X, y


def test_three_row_and_one_row_classes_are_balanced_without_crashing():
    X, y = _data()
    config = SamplingConfig(strategy="balance", majority_cap=None)
    X_res, y_res, report = balance(X, y, config, CLASSES, distributed=False)
    assert report.after == dict.fromkeys(CLASSES, 1000)
    assert report.synthetic_rows == 3 * 1000 - 54
    # The one-row class is duplicated; synthetic three-row rows lie inside its hull.
    np.testing.assert_array_equal(np.unique(X_res[y_res == 2], axis=0), X[y == 2])
    three = X[y == 1]
    synthetic = X_res[len(X) :][y_res[len(X) :] == 1]
    assert (synthetic >= three.min(axis=0) - 1e-5).all()
    assert (synthetic <= three.max(axis=0) + 1e-5).all()


def test_distributed_counts_equal_single_process(ray_session):
    X, y = _data()
    config = SamplingConfig(strategy="ratio", ratio=0.5, majority_cap=800)
    _, y_single, single = balance(X, y, config, CLASSES, distributed=False)
    _, y_dist, dist = balance(X, y, config, CLASSES, distributed=True)
    assert (
        dist.after
        == single.after
        == {
            "benign": 800,
            "three": 400,
            "one": 400,
            "fifty": 400,
        }
    )
    np.testing.assert_array_equal(np.bincount(y_single), np.bincount(y_dist))


def test_nan_is_refused_naming_the_column():
    X, y = _data()
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="feature column 2 holds NaN"):
        balance(X, y, SamplingConfig(), CLASSES, distributed=False)


def test_memory_estimate_refuses_before_allocating():
    X, y = _data()
    config = SamplingConfig(strategy="balance", majority_cap=None, max_memory_mb=0)
    with pytest.raises(
        ValueError, match=r"above max_memory_mb=0\. Lower sampling\.ratio"
    ):
        balance(X, y, config, CLASSES, distributed=False)
