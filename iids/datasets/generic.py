"""A user's own table as a dataset: features, label and classes declared in YAML.

A schema file looks like this::

    name: plant-a                   # the dataset's name in manifests and reports
    features:                       # the feature columns, numeric or categorical
      - {name: pressure, kind: numeric}
      - {name: register, kind: numeric, base: 16, integer: true}  # hex: 1f, 0x1f
      - {name: protocol, kind: categorical}
    drop: [timestamp, src_ip]       # optional: columns kept as text, never features
    label: attack_type              # the label column
    classes: [normal, scan, flood]  # the label's classes; their order fixes the codes
    negative_class: normal          # optional: the benign class (default: the first)
    aliases: {Normal: normal}       # optional: raw spellings normalised at ingest
    tasks:                          # optional: more tasks on the same label column
      binary:
        classes: [normal, attack]
        mapping: {scan: attack, flood: attack}
        negative_class: normal

The adapter always has the task `label`, the label column's classes as declared; it is
the default task. Extra tasks map raw labels (after aliases) to their own classes.
Columns are declared in the order features, drop, label; a raw file may hold them in any
order and may hold other columns, which ingest ignores.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from iids._errors import validation_problems
from iids.datasets.base import Column, DatasetAdapter, Kind, Task

logger = logging.getLogger(__name__)

LABEL_TASK = "label"


class FeatureSpec(BaseModel):
    """One feature column."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the column's name in the header")
    kind: Literal["numeric", "categorical"] = Field(description="how the cells parse")
    base: Literal[2, 10, 16] = Field(10, description="how numbers are written")
    integer: bool = Field(False, description="numeric values are whole numbers")


class TaskSpec(BaseModel):
    """An extra task on the label column."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] = Field(min_length=2, description="the task's classes, in order")
    mapping: dict[str, str] = Field(
        default_factory=dict, description="raw label -> class, for labels not a class"
    )
    negative_class: str | None = Field(None, description="the benign class")


class SchemaSpec(BaseModel):
    """A generic dataset's schema, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the dataset's name")
    features: list[FeatureSpec] = Field(min_length=1, description="feature columns")
    label: str = Field(min_length=1, description="the label column")
    classes: list[str] = Field(min_length=2, description="the label's classes")
    drop: list[str] = Field(default_factory=list, description="columns kept as text")
    negative_class: str | None = Field(None, description="benign class of `label`")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="raw label spelling -> class name"
    )
    tasks: dict[str, TaskSpec] = Field(default_factory=dict, description="more tasks")

    @model_validator(mode="after")
    def _consistent(self) -> SchemaSpec:
        names = [f.name for f in self.features] + self.drop + [self.label]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(
                f"columns declared more than once across features, drop and label: "
                f"{duplicated}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: repeated class names in {self.classes}")
        if self.negative_class is not None and self.negative_class not in self.classes:
            raise ValueError(
                f"negative_class: {self.negative_class!r} is not one of classes "
                f"{self.classes}"
            )
        bad_alias = {k: v for k, v in self.aliases.items() if v not in self.classes}
        if bad_alias:
            raise ValueError(f"aliases: targets not in classes: {bad_alias}")
        if LABEL_TASK in self.tasks:
            raise ValueError(
                f"tasks: {LABEL_TASK!r} is the built-in task on the label column; "
                "give the extra task another name"
            )
        for name, task in self.tasks.items():
            wrong = {k: v for k, v in task.mapping.items() if v not in task.classes}
            if wrong:
                raise ValueError(
                    f"tasks.{name}.mapping: targets not in its classes "
                    f"{task.classes}: {wrong}"
                )
            unmapped = [
                c for c in self.classes if task.mapping.get(c, c) not in task.classes
            ]
            if unmapped:
                raise ValueError(
                    f"tasks.{name}.mapping: classes {unmapped} map to no class of "
                    f"{task.classes}"
                )
            if task.negative_class is not None and task.negative_class not in (
                task.classes
            ):
                raise ValueError(
                    f"tasks.{name}.negative_class: {task.negative_class!r} is not one "
                    f"of its classes {task.classes}"
                )
        return self


def generic_from_yaml(path: str | os.PathLike[str]) -> DatasetAdapter:
    """The adapter a YAML schema file declares (see the module docstring).

    Args:
        path: the schema file.

    Returns:
        The adapter, with the default task `label` and any extra tasks.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not YAML or breaks the schema; the message names the
            file and the offending key.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a schema is a mapping with keys name, features, label, classes; "
            f"found {type(data).__name__}"
        )
    return generic_from_dict(data, source=str(path))


def generic_from_dict(data: dict, *, source: str = "<schema>") -> DatasetAdapter:
    """The adapter a schema mapping declares (the parsed YAML of `generic_from_yaml`).

    Raises:
        ValueError: the mapping breaks the schema; the message names the key.
    """
    try:
        spec = SchemaSpec.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ValueError(f"{source}: invalid dataset schema: {problems}") from None
    return _adapter(spec)


def _adapter(spec: SchemaSpec) -> DatasetAdapter:
    """Build the adapter from a validated spec."""
    columns = [
        Column(f.name, Kind(f.kind), f.base, f.integer)
        if f.kind == "numeric"
        else Column(f.name, Kind.CATEGORICAL)
        for f in spec.features
    ]
    columns += [Column(name, Kind.TEXT) for name in spec.drop]
    columns.append(Column(spec.label, Kind.LABEL))

    tasks = {LABEL_TASK: Task(LABEL_TASK, spec.label, tuple(spec.classes))}
    negative = {LABEL_TASK: spec.negative_class or spec.classes[0]}
    for name, task in spec.tasks.items():
        tasks[name] = Task(name, spec.label, tuple(task.classes), dict(task.mapping))
        negative[name] = task.negative_class or task.classes[0]
    logger.debug("generic dataset %s: %d columns", spec.name, len(columns))
    return DatasetAdapter(
        name=spec.name,
        columns=tuple(columns),
        tasks=tasks,
        default_task=LABEL_TASK,
        negative_class=negative,
        label_aliases=dict(spec.aliases),
    )
