"""Raw rows to model features: parsing, scaling and one-hot encoding, fitted on train only.

The statistics are fitted with Ray Data's own preprocessors (`StandardScaler`,
`OneHotEncoder`) on the training split, then kept as plain numbers and vocabularies so that a
model bundle stores them as JSON and every scorer (batch, HTTP) applies them with numpy, with
no pickled code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from iids.datasets import DatasetAdapter, canonical_category, parse_numbers

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 64  # per categorical column; rarer values share the all-zero code


class FeatureError(ValueError):
    """Raw rows cannot be turned into features; the message names the column and row."""


@dataclass(frozen=True)
class RowFaults:
    """Rows that cannot be turned into features, each with its first fault.

    The reasons use ingest's quarantine vocabulary: `unparseable_number` (text that is
    not a number in the column's base), `nonfinite_number` (NaN or infinity), plus
    `missing_value` (an empty, null cell).

    Attributes:
        rows: positions of the faulty rows in the input, int64, shape (K,), ascending.
        columns: per faulty row, the feature column at fault.
        reasons: per faulty row, the reason.
        values: per faulty row, the cell as found, as text (None for a null cell).
        details: per faulty row, what was expected and what was found.
    """

    rows: np.ndarray
    columns: list[str]
    reasons: list[str]
    values: list[str | None]
    details: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def keep(self, num_rows: int) -> np.ndarray:
        """The bool mask, shape (num_rows,), of the rows that are not faulty."""
        mask = np.ones(num_rows, dtype=bool)
        mask[self.rows] = False
        return mask


@dataclass
class Preprocessor:
    """Fitted feature preparation.

    Attributes:
        numeric: numeric feature columns, in feature order.
        means, stds: per numeric column, fitted on the training split.
        bases: the base numbers are written in, per numeric column (text input).
        integer: numeric columns that hold whole numbers.
        categories: per categorical column, its vocabulary in one-hot order.
    """

    numeric: list[str]
    means: list[float]
    stds: list[float]
    bases: list[int]
    integer: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col, vocab in self.categories.items():
            names.extend(f"{col}={v}" for v in vocab)
        return names

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns a row must carry to be scored."""
        return [*self.numeric, *self.categories]

    @classmethod
    def fit(cls, train: pa.Table, adapter: DatasetAdapter) -> Preprocessor:
        """Fit scaling and encoders on the training rows (typed by ingest).

        Args:
            train: typed training rows; must hold the adapter's feature columns.
            adapter: the dataset, which says which columns are features.
        """
        import ray.data
        from ray.data.preprocessors import OneHotEncoder, StandardScaler

        numeric = adapter.numeric_features
        categorical = adapter.categorical_features
        ds = ray.data.from_arrow(train.select(numeric + categorical))

        # Scaling: mean and population std per numeric column.
        stats = StandardScaler(columns=numeric).fit(ds).stats_
        means = [float(stats[f"mean({c})"]) for c in numeric]
        stds = [float(stats[f"std({c})"] or 0.0) for c in numeric]
        constant = [c for c, s in zip(numeric, stds, strict=True) if s == 0.0]
        if constant:
            logger.warning("constant feature columns (kept, scaled by 1): %s", constant)

        # One-hot vocabularies of the most frequent categories.
        categories: dict[str, list[str]] = {}
        if categorical:
            canon = ray.data.from_arrow(
                pa.table({c: canonical_category(train[c]) for c in categorical})
            )
            encoder = OneHotEncoder(
                columns=categorical,
                max_categories={c: MAX_CATEGORIES for c in categorical},
            ).fit(canon)
            for c in categorical:
                vocab = encoder.stats_[f"unique_values({c})"]
                categories[c] = [
                    str(v) for v, _ in sorted(vocab.items(), key=lambda kv: kv[1])
                ]

        return cls(
            numeric=numeric,
            means=means,
            stds=stds,
            bases=[adapter.column(c).base for c in numeric],
            integer=[c for c in numeric if adapter.column(c).integer],
            categories=categories,
        )

    def transform(self, rows: pa.Table) -> np.ndarray:
        """Raw or typed rows to scaled features.

        Numeric cells may be numbers or text in the column's base; categorical cells
        are normalised so `0`, `"0"` and `"0.0"` are one category.

        Args:
            rows: a table holding at least `input_columns`, N rows.

        Returns:
            float32 features, shape (N, num_features).

        Raises:
            FeatureError: a column is missing, or a cell is not a finite number; the
                message names the column, the row and the value.
        """
        out, bad = self._features(rows)
        for col, mask in bad.items():
            if mask.any():
                row = int(np.flatnonzero(mask)[0])
                value = rows[col][row].as_py()
                raise FeatureError(
                    f"column {col!r}, row {row}: expected a finite number, found "
                    f"{value!r} ({int(mask.sum())} such row(s))"
                )
        return out

    def transform_checked(self, rows: pa.Table) -> tuple[np.ndarray, RowFaults]:
        """Features of the rows that can be turned into features; faults of the others.

        A row is faulty when one of its numeric cells is empty, does not parse in the
        column's base, or is not finite. Unseen categories are not faults: they get
        the all-zero code, as rare categories do in training.

        Args:
            rows: a table holding at least `input_columns`, N rows.

        Returns:
            (features, faults): float32 features of the N - K good rows, in input
            order, shape (N - K, num_features), and the K faulty rows.

        Raises:
            FeatureError: a column is missing (a problem of the whole table, not of
                its rows).
        """
        out, bad = self._features(rows)
        n, none = rows.num_rows, len(self.numeric)
        # Per row, the first faulty numeric column in feature order (`none`: no fault).
        first = np.full(n, none)
        for j, col in enumerate(self.numeric):
            first[bad[col] & (first == none)] = j
        faulty = np.flatnonzero(first < none)
        columns, reasons, values, details = [], [], [], []
        for i in faulty:
            j = int(first[i])
            col = self.numeric[j]
            reason, value, detail = _cell_fault(rows[col][int(i)], col, self.bases[j])
            columns.append(col)
            reasons.append(reason)
            values.append(value)
            details.append(detail)
        faults = RowFaults(faulty.astype(np.int64), columns, reasons, values, details)
        return (out[faults.keep(n)] if len(faults) else out), faults

    def _features(self, rows: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Features (N, F) float32, and per numeric column the mask of faulty cells."""
        missing = [c for c in self.input_columns if c not in rows.column_names]
        if missing:
            raise FeatureError(
                f"missing feature column(s) {missing}; expected {self.input_columns}"
            )
        out = np.empty((rows.num_rows, self.num_features), dtype=np.float32)
        bad: dict[str, np.ndarray] = {}
        for j, col in enumerate(self.numeric):
            values, bad[col] = _numbers(rows[col], self.bases[j])
            std = self.stds[j] or 1.0
            out[:, j] = (values - self.means[j]) / std
        j = len(self.numeric)
        for col, vocab in self.categories.items():
            codes = canonical_category(rows[col]).to_numpy(zero_copy_only=False)
            block = out[:, j : j + len(vocab)]
            block[:] = 0.0
            for k, value in enumerate(vocab):
                block[codes == value, k] = 1.0
            j += len(vocab)
        return out, bad

    def snap(self, features: np.ndarray) -> np.ndarray:
        """Round synthetic rows back onto valid values, in place.

        Whole-number columns are rounded in raw units; each one-hot group keeps a single
        1 at its largest entry.

        Args:
            features: float32 features, shape (N, num_features).
        """
        for j, col in enumerate(self.numeric):
            if col in self.integer:
                std = self.stds[j] or 1.0
                raw = np.rint(features[:, j] * std + self.means[j])
                features[:, j] = (raw - self.means[j]) / std
        j = len(self.numeric)
        for vocab in self.categories.values():
            block = features[:, j : j + len(vocab)]
            hot = block.argmax(axis=1)
            has_any = block.max(axis=1) > 0.5
            block[:] = 0.0
            block[has_any, hot[has_any]] = 1.0
            j += len(vocab)
        return features

    def to_dict(self) -> dict:
        return {
            "numeric": self.numeric,
            "means": self.means,
            "stds": self.stds,
            "bases": self.bases,
            "integer": self.integer,
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessor:
        return cls(**data)


def _numbers(
    cells: pa.ChunkedArray | pa.Array, base: int
) -> tuple[np.ndarray, np.ndarray]:
    """One numeric column as float64 and the mask of cells that are not finite numbers."""
    if pa.types.is_integer(cells.type) or pa.types.is_floating(cells.type):
        values = np.asarray(cells.to_numpy(zero_copy_only=False), dtype=np.float64)
        return values, ~np.isfinite(values)
    values, bad = parse_numbers(cells, base)
    return values, bad | ~np.isfinite(values)


def _cell_fault(cell: pa.Scalar, col: str, base: int) -> tuple[str, str | None, str]:
    """(reason, value as text, detail) of one numeric cell that is not a finite number."""
    value = cell.as_py()
    if value is None:
        return "missing_value", None, f"column {col}: expected a number, found null"
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, str):
        _, unparseable = parse_numbers(pa.array([value]), base)
        if unparseable[0]:
            return (
                "unparseable_number",
                text,
                f"column {col}: expected a base-{base} number, found {value!r}",
            )
    return (
        "nonfinite_number",
        text,
        f"column {col}: expected a finite number, found {text!r}",
    )
