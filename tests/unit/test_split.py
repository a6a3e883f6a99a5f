import numpy as np
import pytest

from iids.split import split_rows, train_test_overlap


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    distinct = rng.integers(0, 50, size=(400, 3)).astype(np.float64)
    rows = distinct[rng.integers(0, 400, size=4000)]  # heavy duplication
    labels = (rows[:, 0] > 25).astype(np.int64)
    return rows, labels


def test_paper_split_keeps_duplicates_and_reports_overlap():
    X, y = _data()
    split = split_rows(X, y, protocol="paper", seed=1)
    assert len(split.train) + len(split.val) + len(split.test) == len(y)
    assert split.duplicates_removed == 0
    assert split.train_test_overlap > 0.5 * len(split.test)


def test_honest_split_has_no_train_test_overlap():
    X, y = _data()
    split = split_rows(X, y, protocol="honest", seed=1)
    assert split.duplicates_removed == len(y) - len(np.unique(X, axis=0))
    assert split.train_test_overlap == 0
    train = {tuple(r) for r in X[split.train]}
    assert not any(tuple(r) in train for r in X[split.test])


def test_honest_keeps_conflicting_feature_vectors_in_one_part():
    X = np.array(
        [[1.0, 1.0]] * 4 + [[2.0, 2.0]] * 2 + [[float(i), 0.0] for i in range(40)]
    )
    y = np.array([0, 1, 0, 1, 0, 0] + [i % 2 for i in range(40)])
    split = split_rows(X, y, protocol="honest", seed=0)
    assert split.conflicting_features == 1
    assert split.train_test_overlap == 0


def test_split_is_stratified_and_seeded():
    X, y = _data()
    a = split_rows(X, y, protocol="paper", seed=3)
    b = split_rows(X, y, protocol="paper", seed=3)
    np.testing.assert_array_equal(a.test, b.test)
    share = y[a.test].mean()
    assert abs(share - y.mean()) < 0.02


def test_tiny_classes_still_reach_test():
    X = np.arange(23, dtype=np.float64).reshape(-1, 1)
    y = np.array([0] * 20 + [1] * 2 + [2])
    split = split_rows(X, y, protocol="paper", seed=0)
    assert 1 in y[split.test]
    assert 2 in y[split.train]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "random"}, "protocol must be one of"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum below 1"),
    ],
)
def test_bad_split_settings_are_refused(kwargs, message):
    X, y = _data()
    with pytest.raises(ValueError, match=message):
        split_rows(X, y, **kwargs)


@pytest.mark.parametrize("protocol", ["paper", "honest"])
def test_group_split_never_places_one_group_in_two_parts(protocol):
    X, y = _data()
    days = np.arange(len(y)) % 17
    split = split_rows(X, y, protocol=protocol, seed=2, groups=days)
    parts = [set(days[idx]) for idx in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    if protocol == "honest":
        assert split.train_test_overlap == 0


def test_overlap_check_catches_a_planted_duplicate():
    X = np.arange(40, dtype=np.float64).reshape(-1, 2)
    train, test = np.arange(0, 15), np.arange(15, 20)
    assert train_test_overlap(X, train, test) == 0
    X[17] = X[3]  # plant a training row in the test part
    assert train_test_overlap(X, train, test) == 1
