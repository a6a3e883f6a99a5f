"""The evaluation report's wording where the two models are close."""

from __future__ import annotations

from iids.evaluate import _protocols_markdown


def _protocol(macro_f1: float, baseline_f1: float) -> dict:
    per_class = {"BENIGN": {"support": 9, "recall": 1.0, "f1": 1.0}}
    return {
        "rows": {"test": 9, "duplicates_removed": 0, "train_test_overlap": 0},
        "macro_f1": macro_f1,
        "accuracy": 1.0,
        "fpr": 0.0,
        "per_class": per_class,
        "baseline": {"macro_f1": baseline_f1, "per_class": per_class},
    }


def test_a_model_trailing_the_baseline_by_less_than_the_table_shows_says_by_how_much():
    report = {
        "protocols": {
            "paper": _protocol(0.9999894, 1.0),
            "honest": _protocol(0.71, 0.66),
        }
    }
    text = "\n".join(_protocols_markdown(report))

    assert "falls short of the tree baseline (macro-F1 0.99999 vs 1.00000)" in text
    assert "Under `honest`" not in text  # the hybrid model leads there
