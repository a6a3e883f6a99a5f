"""Dataset adapters: raw schemas, parsing rules and tasks of the datasets iids knows."""

from __future__ import annotations

import os

from iids.datasets.base import (
    Column,
    DatasetAdapter,
    Kind,
    Task,
    canonical_category,
    parse_numbers,
)
from iids.datasets.ciciov2024 import ciciov2024
from iids.datasets.edge_iiotset import edge_iiotset
from iids.datasets.generic import generic_from_dict, generic_from_yaml

DATASETS = ("ciciov2024", "edge-iiotset", "generic")

__all__ = [
    "DATASETS",
    "Column",
    "DatasetAdapter",
    "Kind",
    "Task",
    "canonical_category",
    "ciciov2024",
    "edge_iiotset",
    "generic_from_dict",
    "generic_from_yaml",
    "get_adapter",
    "parse_numbers",
]


def get_adapter(
    name: str,
    *,
    encoding: str = "decimal",
    schema: str | os.PathLike[str] | None = None,
) -> DatasetAdapter:
    """The adapter for a dataset by its command-line name.

    Args:
        name: `ciciov2024`, `edge-iiotset` (or `edge_iiotset`) or `generic`.
        encoding: for CICIoV2024, `decimal`, `hex` or `binary`.
        schema: for `generic`, the YAML file declaring features, label and classes.

    Raises:
        ValueError: an unknown dataset name, or `generic` without a schema.
    """
    if name == "ciciov2024":
        return ciciov2024(encoding)
    if name in ("edge-iiotset", "edge_iiotset"):
        return edge_iiotset()
    if name == "generic":
        if schema is None:
            raise ValueError(
                "dataset generic needs a schema: pass --schema FILE, a YAML file "
                "declaring name, features, label and classes"
            )
        return generic_from_yaml(schema)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
