"""The Edge-IIoTset adapter, and the other adapters `get_adapter` builds."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from iids.datasets import Kind, get_adapter
from iids.datasets.edge_iiotset import (
    ATTACK_CLASSES,
    CATEGORICAL,
    COLUMNS,
    DROP,
    GROUPS,
    PUBLISHED_COUNTS,
    edge_iiotset,
)
from iids.datasets.generic import generic_from_dict, generic_from_yaml

pytestmark = pytest.mark.unit

DATA_DIR = Path(
    os.environ.get("IIDS_DATA_DIR", Path(__file__).parents[3] / "shared" / "data")
)
RAW = DATA_DIR / "edge_iiotset" / "raw" / "OS_Fingerprinting_attack.csv"


def test_columns_follow_the_raw_header():
    if not RAW.exists():
        pytest.skip(f"real data not found at {RAW}; set IIDS_DATA_DIR")
    with open(RAW, encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert edge_iiotset().column_names == header
    assert len(COLUMNS) == 63


def test_kinds_follow_the_drop_and_categorical_lists():
    adapter = edge_iiotset()
    kinds = {c.name: c.kind for c in adapter.columns}
    assert {n for n, k in kinds.items() if k is Kind.TEXT} == set(DROP)
    assert adapter.categorical_features == list(CATEGORICAL)
    assert adapter.label_columns == ["Attack_label", "Attack_type"]
    assert len(adapter.numeric_features) == 63 - len(DROP) - len(CATEGORICAL) - 2
    assert all(adapter.column(n).base == 10 for n in adapter.numeric_features)
    assert not adapter.column("udp.time_delta").integer
    assert adapter.column("tcp.len").integer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", "Normal"), ("0.0", "Normal"), ("1", "Attack"), ("1.0", "Attack")],
)
def test_binary_task_reads_every_spelling_of_attack_label(raw, expected):
    assert edge_iiotset().task("binary").class_of(raw) == expected


def test_tasks_classes_and_groups():
    adapter = edge_iiotset()
    attack, group = adapter.task(None), adapter.task("group")
    assert attack.name == "attack"
    assert attack.classes == ATTACK_CLASSES
    assert set(ATTACK_CLASSES) == set(PUBLISHED_COUNTS)
    assert group.classes == (
        "Normal",
        "DDoS",
        "Injection",
        "Scanning",
        "Malware",
        "MITM",
    )
    members = [c for g in GROUPS.values() for c in g]
    assert sorted(members) == sorted(ATTACK_CLASSES)
    assert group.class_of("XSS") == "Injection"
    assert group.class_of("Fingerprinting") == "Scanning"
    assert group.class_of("Ransomware") == "Malware"
    assert group.class_of("DDoS_HTTP") == "DDoS"
    assert attack.class_of("OS_Fingerprinting") == "Fingerprinting"
    assert adapter.label_aliases == {"OS_Fingerprinting": "Fingerprinting"}
    assert adapter.negative_class == {
        t: "Normal" for t in ("binary", "group", "attack")
    }


def test_drop_and_categorical_lists_can_be_overridden():
    adapter = edge_iiotset(drop=["frame.time"], categorical=["tcp.flags"])
    assert adapter.column("tcp.srcport").kind is Kind.NUMERIC
    assert adapter.column("tcp.flags").kind is Kind.CATEGORICAL
    assert adapter.column("http.request.method").kind is Kind.NUMERIC
    with pytest.raises(
        ValueError, match=r"drop list names unknown column\(s\) \['nope'\]"
    ):
        edge_iiotset(drop=["nope"])
    with pytest.raises(ValueError, match="label column"):
        edge_iiotset(categorical=["Attack_type"])


def test_get_adapter_names():
    assert get_adapter("edge-iiotset").name == "edge-iiotset"
    assert get_adapter("edge_iiotset").name == "edge-iiotset"
    assert get_adapter("ciciov2024", encoding="hex").column("ID").base == 16
    with pytest.raises(ValueError, match="needs a schema"):
        get_adapter("generic")
    with pytest.raises(ValueError, match="unknown dataset 'kdd'"):
        get_adapter("kdd")


# -- the generic adapter, declared in YAML ------------------------------------------

SCHEMA = """\
name: plant-a
features:
  - {name: pressure, kind: numeric}
  - {name: register, kind: numeric, base: 16, integer: true}
  - {name: protocol, kind: categorical}
drop: [timestamp]
label: attack_type
classes: [normal, scan, flood]
aliases: {Normal: normal}
tasks:
  binary:
    classes: [normal, attack]
    mapping: {scan: attack, flood: attack}
"""


def test_generic_schema_builds_an_adapter(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text(SCHEMA)
    adapter = get_adapter("generic", schema=path)
    assert adapter.name == "plant-a"
    assert adapter.column_names == [
        "pressure",
        "register",
        "protocol",
        "timestamp",
        "attack_type",
    ]
    assert adapter.column("register").base == 16
    assert adapter.column("timestamp").kind is Kind.TEXT
    assert adapter.default_task == "label"
    assert adapter.task(None).classes == ("normal", "scan", "flood")
    assert adapter.task("binary").class_of("flood") == "attack"
    assert adapter.negative_class == {"label": "normal", "binary": "normal"}
    assert generic_from_yaml(path) == adapter


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": [{"name": "a", "kind": "text"}]}, r"features\.0\.kind"),
        ({"classes": ["normal"]}, r"classes: List should have at least 2"),
        ({"label": None}, r"label: Input should be a valid string"),
        ({"drop": ["pressure"]}, r"declared more than once.*pressure"),
        ({"negative_class": "benign"}, r"negative_class: 'benign' is not one of"),
        ({"colour": "red"}, r"colour: Extra inputs are not permitted"),
        (
            {"tasks": {"binary": {"classes": ["normal", "attack"]}}},
            r"tasks\.binary\.mapping: classes \['scan', 'flood'\] map to no class",
        ),
    ],
)
def test_generic_schema_errors_name_the_key(change, message):
    import yaml

    data = {**yaml.safe_load(SCHEMA), **change}
    with pytest.raises(ValueError, match=message):
        generic_from_dict(data, source="schema.yaml")


def test_generic_schema_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: a schema is a mapping"):
        generic_from_yaml(path)
