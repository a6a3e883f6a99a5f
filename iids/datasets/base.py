"""The dataset adapter: a raw table's schema, how its cells parse, and its tasks.

An adapter says, for one dataset, which columns a raw export has, how each one parses
(numbers in a given base, categories, labels, free text kept as it is), which columns are
never features, and how the label column maps to the classes of each task. Ingest, training,
batch scoring and the HTTP endpoint all read raw rows through the same adapter.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Kind(enum.StrEnum):
    """How a raw column is parsed and used."""

    NUMERIC = "numeric"  # a number; a feature unless dropped
    CATEGORICAL = "categorical"  # a category; one-hot encoded as a feature
    LABEL = "label"  # a target; never a feature
    TEXT = "text"  # kept as written; never a feature (identifiers, payloads)


@dataclass(frozen=True)
class Column:
    """One raw column: its name, its kind, and how its numbers are written.

    `integer` marks a numeric column whose values are whole numbers (CAN ids, bytes,
    flags): synthetic rows are rounded back to whole numbers there.
    """

    name: str
    kind: Kind
    base: int = 10  # 10, 16 or 2: how integers are written in this column
    integer: bool = False


@dataclass(frozen=True)
class Task:
    """A classification task: the label column and how its raw values map to classes.

    `classes` fixes the class order, so class `classes[i]` has integer code `i`.
    `mapping` sends a raw label value to a class name; raw values absent from it
    must already be class names.
    """

    name: str
    label_column: str
    classes: tuple[str, ...]
    mapping: dict[str, str] = field(default_factory=dict)

    def class_of(self, raw: str) -> str | None:
        """The class name of a raw label value, or None when it is unknown."""
        name = self.mapping.get(raw, raw)
        return name if name in self.classes else None


@dataclass(frozen=True)
class DatasetAdapter:
    """A dataset's raw schema and tasks.

    Attributes:
        name: the dataset's name on the command line (`ciciov2024`, ...).
        columns: every raw column, in the order a raw export writes them.
        tasks: the tasks by name.
        default_task: the task used when none is named.
        negative_class: the benign class of each task, for the false-positive rate.
        label_aliases: raw label spellings normalised at ingest (`OS_Fingerprinting`).
        benign_label: the raw label of benign traffic in the binary task's column.
    """

    name: str
    columns: tuple[Column, ...]
    tasks: dict[str, Task]
    default_task: str
    negative_class: dict[str, str]
    label_aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(
                f"dataset {self.name}: columns declared twice: {duplicated}"
            )
        if self.default_task not in self.tasks:
            raise ValueError(
                f"dataset {self.name}: default task {self.default_task!r} is not one of "
                f"{sorted(self.tasks)}"
            )
        for task in self.tasks.values():
            if task.label_column not in names:
                raise ValueError(
                    f"dataset {self.name}: task {task.name!r} reads label column "
                    f"{task.label_column!r}, which is not a column"
                )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is Kind.NUMERIC]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is Kind.CATEGORICAL]

    @property
    def label_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is Kind.LABEL]

    def task(self, name: str | None) -> Task:
        """The task called `name` (the default task when None).

        Raises:
            ValueError: the dataset has no such task.
        """
        name = name or self.default_task
        if name not in self.tasks:
            raise ValueError(
                f"dataset {self.name} has no task {name!r}; choose one of "
                f"{sorted(self.tasks)}"
            )
        return self.tasks[name]

    def to_dict(self) -> dict:
        """A JSON-ready description, enough to rebuild the adapter (saved in bundles)."""
        return {
            "name": self.name,
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind.value,
                    "base": c.base,
                    "integer": c.integer,
                }
                for c in self.columns
            ],
            "tasks": {
                t.name: {
                    "label_column": t.label_column,
                    "classes": list(t.classes),
                    "mapping": t.mapping,
                }
                for t in self.tasks.values()
            },
            "default_task": self.default_task,
            "negative_class": self.negative_class,
            "label_aliases": self.label_aliases,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetAdapter:
        """Rebuild an adapter from `to_dict` output."""
        return cls(
            name=data["name"],
            columns=tuple(
                Column(
                    c["name"],
                    Kind(c["kind"]),
                    c.get("base", 10),
                    c.get("integer", False),
                )
                for c in data["columns"]
            ),
            tasks={
                name: Task(
                    name, t["label_column"], tuple(t["classes"]), t.get("mapping", {})
                )
                for name, t in data["tasks"].items()
            },
            default_task=data["default_task"],
            negative_class=data["negative_class"],
            label_aliases=data.get("label_aliases", {}),
        )

    def arrow_schema(self) -> pa.Schema:
        """The typed schema of ingested rows (numbers as float64, the rest as text)."""
        return pa.schema(
            [
                pa.field(
                    c.name, pa.float64() if c.kind is Kind.NUMERIC else pa.string()
                )
                for c in self.columns
            ]
        )


_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_PREFIXED_HEX = re.compile(r"^[+-]?0[xX][0-9a-fA-F]+$")
_BARE_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BINARY = re.compile(r"^[01]+$")


def parse_numbers(values: pa.Array, base: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Parse text cells written in `base` into float64.

    Base 10 accepts integers, decimals, exponents and `0x` hex (raw captures mix `0`,
    `0.0` and `0x00`: all three parse to 0.0). Bases 16 and 2 accept bare digits of
    that base (the CICIoV2024 hexadecimal and binary encodings), and `0x` hex for 16.
    Surrounding spaces are ignored. NaN and infinity parse as such; the caller decides.

    Args:
        values: text cells, shape (N,).
        base: 10, 16 or 2.

    Returns:
        (parsed, bad): float64 values with NaN where a cell did not parse, and a bool
        mask, shape (N,), of the cells that did not parse (empty and null cells included).
    """
    if base not in (2, 10, 16):
        raise ValueError(f"base must be 2, 10 or 16, got {base}")
    text = pc.utf8_trim_whitespace(_one_chunk(values).cast(pa.string()))

    # Parse each distinct spelling once: columns of captured traffic repeat few values.
    encoded = pc.dictionary_encode(text)
    dictionary = encoded.dictionary.to_pylist()
    parsed_dict = np.array([_parse_one(s, base) for s in dictionary], dtype=np.float64)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    nulls = np.asarray(encoded.is_null())
    parsed = np.full(len(text), np.nan)
    valid = ~nulls
    parsed[valid] = parsed_dict[indices[valid].astype(np.int64)]
    bad = nulls.copy()
    bad_dict = np.array([_is_unparseable(s, base) for s in dictionary], dtype=bool)
    bad[valid] = bad_dict[indices[valid].astype(np.int64)]
    return parsed, bad


_SPECIAL = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_SPECIAL.update({"infinity": math.inf, "-infinity": -math.inf})


def _parse_one(s: str, base: int) -> float:
    """One cell to float; NaN when it does not parse (see `_is_unparseable`)."""
    if _is_unparseable(s, base):
        return math.nan
    low = s.lower()
    if low in _SPECIAL:
        return _SPECIAL[low]
    if base == 2:
        return float(int(s, 2))
    if base == 16 or low.lstrip("+-").startswith("0x"):
        return float(int(s, 16))
    return float(s)


def _is_unparseable(s: str, base: int) -> bool:
    """True when a trimmed cell is not a number written in `base`."""
    if s.lower() in _SPECIAL:
        return False
    if base == 10:
        return not (_DECIMAL.match(s) or _PREFIXED_HEX.match(s))
    if base == 16:
        return not (_BARE_HEX.match(s) or _PREFIXED_HEX.match(s))
    return not _BINARY.match(s)


def canonical_category(values: pa.Array) -> pa.Array:
    """Normalise categorical cells so one value written several ways is one category.

    `0`, `"0"`, `"0.0"` and `0x0` all become `"0"`; other numbers become their shortest
    decimal spelling (`1.50` -> `"1.5"`); text is trimmed and kept. Nulls stay null.
    """
    text = pc.utf8_trim_whitespace(_one_chunk(values).cast(pa.string()))
    encoded = pc.dictionary_encode(text)
    canon = [_canonical_one(s) for s in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(canon, type=pa.string()), encoded.indices)


def _canonical_one(s: str) -> str:
    """The canonical spelling of one categorical cell."""
    if _is_unparseable(s, 10) or s.lower() in _SPECIAL:
        return s
    number = _parse_one(s, 10)
    if number.is_integer():
        return str(int(number))
    return repr(number)


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A contiguous array from an array or a chunked array."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values
