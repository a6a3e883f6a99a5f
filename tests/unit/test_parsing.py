import math

import numpy as np
import pyarrow as pa
import pytest

from iids.datasets import canonical_category, get_adapter, parse_numbers
from iids.ingest import parse_day


def test_decimal_cells_written_differently_parse_alike():
    values, bad = parse_numbers(pa.array(["0", " 0.0", "0x00", "12", "1e2", "-3.5 "]))
    np.testing.assert_array_equal(values, [0, 0, 0, 12, 100, -3.5])
    assert not bad.any()


@pytest.mark.parametrize(
    ("base", "cells", "expected"),
    [(16, ["0316", "ff", "0x1F"], [790, 255, 31]), (2, ["00000101", "1"], [5, 1])],
)
def test_hex_and_binary_encodings(base, cells, expected):
    values, bad = parse_numbers(pa.array(cells), base)
    np.testing.assert_array_equal(values, expected)
    assert not bad.any()


def test_unparseable_and_null_cells_are_flagged_not_guessed():
    values, bad = parse_numbers(pa.array(["1", "abc", None, "", "192.168.0.1", "12"]))
    assert bad.tolist() == [False, True, True, True, True, False]
    assert math.isnan(values[1]) and values[5] == 12


def test_nan_and_infinity_parse_as_such_for_the_caller_to_judge():
    values, bad = parse_numbers(pa.array(["nan", "inf", "-inf"]))
    assert not bad.any()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


def test_binary_rejects_other_digits():
    _, bad = parse_numbers(pa.array(["0102"]), 2)
    assert bad.tolist() == [True]


def test_categorical_spellings_of_one_value_are_one_category():
    canon = canonical_category(pa.array([0, 1], pa.int64()).cast(pa.string()))
    assert canon.to_pylist() == ["0", "1"]
    text = canonical_category(pa.array(["0", "0.0", " 0 ", "0x0", "GET", "1.50"]))
    assert text.to_pylist() == ["0", "0", "0", "0", "GET", "1.5"]


def test_ciciov2024_schema_keeps_labels_out_of_features():
    adapter = get_adapter("ciciov2024")
    assert adapter.numeric_features == ["ID"] + [f"DATA_{i}" for i in range(8)]
    assert set(adapter.label_columns) == {"label", "category", "specific_class"}
    assert adapter.task(None).name == "specific"
    assert len(adapter.task("specific").classes) == 6
    assert len(adapter.task("category").classes) == 3
    assert len(adapter.task("binary").classes) == 2


def test_unknown_task_and_encoding_are_named():
    with pytest.raises(ValueError, match="no task 'nope'"):
        get_adapter("ciciov2024").task("nope")
    with pytest.raises(ValueError, match="encoding must be one of"):
        get_adapter("ciciov2024", encoding="octal")


@pytest.mark.parametrize(
    "day", ["20261202", "2026-13-02", "2026-W49-3", "12/02/2026", ""]
)
def test_a_day_must_be_written_yyyy_mm_dd(day):
    with pytest.raises(ValueError, match="day must be a date written YYYY-MM-DD"):
        parse_day(day)


def test_a_calendar_day_passes_unchanged():
    assert parse_day("2026-12-02") == "2026-12-02"
