"""Synthetic data: deterministic, in the raw schema, with the requested class counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from iids.datasets import get_adapter, parse_numbers
from iids.datasets.edge_iiotset import PUBLISHED_COUNTS
from iids.synth import allocate, synth

pytestmark = pytest.mark.unit

DATASETS = ("ciciov2024", "edge-iiotset")


def _read(path) -> pa.Table:
    adapter = get_adapter("edge-iiotset" if "edge" in str(path) else "ciciov2024")
    types = {n: pa.string() for n in adapter.column_names}
    options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)
    return pacsv.read_csv(path, convert_options=options)


@pytest.mark.parametrize("dataset", DATASETS)
def test_same_seed_same_bytes(dataset, tmp_path):
    first = Path(synth(dataset, 3000, 7, tmp_path / "a")["path"]).read_bytes()
    again = Path(synth(dataset, 3000, 7, tmp_path / "b")["path"]).read_bytes()
    other = Path(synth(dataset, 3000, 8, tmp_path / "c")["path"]).read_bytes()
    assert first == again
    assert first != other


@pytest.mark.parametrize("dataset", DATASETS)
def test_header_is_the_raw_schema_and_sidecar_counts_the_rows(dataset, tmp_path):
    meta = synth(dataset, 2000, 1, tmp_path)
    adapter = get_adapter(dataset)
    with open(meta["path"], encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split(",") == adapter.column_names
    assert "synthetic" in meta["path"].rsplit("/", 1)[-1]
    with open(meta["path"] + ".synthetic.json", encoding="utf-8") as f:
        sidecar = json.load(f)
    assert sidecar == meta
    assert sidecar["seed"] == 1 and sidecar["rows"] == 2000
    assert sidecar["generator"].startswith("iids.synth/")

    table = _read(meta["path"])
    assert table.num_rows == 2000
    task = adapter.task(None)
    labels = table[meta["class_column"]].to_pylist()
    found = {}
    for raw in labels:
        name = task.class_of(adapter.label_aliases.get(raw, raw))
        found[name] = found.get(name, 0) + 1
    assert found == meta["class_counts"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_cell_parses_and_every_label_is_known(dataset, tmp_path):
    meta = synth(dataset, 3000, 2, tmp_path)
    adapter = get_adapter(dataset)
    table = _read(meta["path"])
    for name in adapter.numeric_features:
        values, bad = parse_numbers(table[name], adapter.column(name).base)
        assert not bad.any(), f"{name}: {table[name][int(np.argmax(bad))]}"
        assert np.isfinite(values).all(), name
    for task in adapter.tasks.values():
        for raw in set(table[task.label_column].to_pylist()):
            assert task.class_of(adapter.label_aliases.get(raw, raw)), (task.name, raw)


def test_edge_class_counts_follow_published_proportions(tmp_path):
    meta = synth("edge-iiotset", 20_000, 3, tmp_path)
    counts = meta["class_counts"]
    assert sum(counts.values()) == 20_000
    assert counts == allocate(PUBLISHED_COUNTS, 20_000, 10)
    total = sum(PUBLISHED_COUNTS.values())
    for name, published in PUBLISHED_COUNTS.items():
        expected = published / total * 20_000
        assert counts[name] >= 10
        if expected >= 10:
            assert abs(counts[name] - expected) <= 10, name
    assert counts["Normal"] / 20_000 == pytest.approx(0.728, abs=0.002)


def test_small_runs_keep_every_class(tmp_path):
    edge = synth("edge-iiotset", 300, 0, tmp_path)["class_counts"]
    assert len(edge) == 15 and min(edge.values()) >= 10
    cic = synth("ciciov2024", 600, 0, tmp_path)["class_counts"]
    assert len(cic) == 6 and min(cic.values()) >= 48
    assert max(cic, key=cic.get) == "BENIGN"


def test_edge_keeps_the_raw_quirks(tmp_path):
    table = _read(synth("edge-iiotset", 5000, 4, tmp_path)["path"])
    times = table["frame.time"].to_pylist()
    assert all(t.startswith(" 2021 ") and t.endswith(" ") for t in times)
    checksums = set(table["tcp.checksum"].to_pylist())
    assert "0" in checksums and any(c.startswith("0x") for c in checksums)
    assert "0.0" in set(table["tcp.len"].to_pylist())
    types = set(table["Attack_type"].to_pylist())
    assert {"OS_Fingerprinting", "Fingerprinting"} <= types
    assert set(table["Attack_label"].to_pylist()) == {"0", "1", "0.0", "1.0"}


def test_ciciov2024_frames_look_like_the_capture(tmp_path):
    table = _read(synth("ciciov2024", 20_000, 5, tmp_path)["path"]).to_pandas()
    ids = {c: set(g["ID"].astype(int)) for c, g in table.groupby("specific_class")}
    assert ids["DoS"] <= {0, 291}
    assert ids["GAS"] == {513}
    assert ids["RPM"] == {476, 513}
    assert ids["SPEED"] <= {344, 513}
    assert ids["STEERING_WHEEL"] == {128}
    assert len(ids["BENIGN"]) > 40
    views = set(map(tuple, table[["label", "category", "specific_class"]].values))
    assert ("BENIGN", "BENIGN", "BENIGN") in views
    assert ("ATTACK", "SPOOFING", "GAS") in views
    assert ("ATTACK", "DoS", "DoS") in views
    assert len(views) == 6
    payload = table[[f"DATA_{i}" for i in range(8)]].astype(int)
    assert payload.min().min() >= 0 and payload.max().max() <= 255

    # The benign schedule has rolling counters: id 125 steps DATA_3 by 16.
    counter = table.loc[table["ID"] == "125", "DATA_3"].astype(int).to_numpy()
    assert len(set(counter)) == 16
    assert set(np.diff(counter) % 256) == {16}


def test_gzip_output_is_deterministic(tmp_path):
    a = synth("ciciov2024", 1000, 9, tmp_path / "a" / "can_synthetic.csv.gz")
    b = synth("ciciov2024", 1000, 9, tmp_path / "b" / "can_synthetic.csv.gz")
    data = Path(a["path"]).read_bytes()
    assert data == Path(b["path"]).read_bytes()
    assert gzip.decompress(data).startswith(b"ID,DATA_0,")


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="must contain 'synthetic'"):
        synth("ciciov2024", 100, 0, tmp_path / "capture.csv")
    with pytest.raises(ValueError, match="unknown dataset 'kdd'"):
        synth("kdd", 100, 0, tmp_path)
    with pytest.raises(ValueError, match="rows must be at least 15"):
        synth("edge-iiotset", 5, 0, tmp_path)
