"""Ingest of real captures and of synthetic stand-ins, end to end on a local Ray.

Real files come from `IIDS_DATA_DIR` (default: `../shared/data` beside the project);
tests that need them are skipped when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pytest

from iids.datasets import get_adapter
from iids.ingest import ingest
from iids.synth import synth

pytestmark = pytest.mark.integration

DATA_DIR = Path(
    os.environ.get("IIDS_DATA_DIR", Path(__file__).parents[3] / "shared" / "data")
)
EDGE_RAW = DATA_DIR / "edge_iiotset" / "raw" / "OS_Fingerprinting_attack.csv"
CIC_DIR = DATA_DIR / "ciciov2024" / "decimal"
SAMPLE_ROWS = 2000  # per real CICIoV2024 file


@pytest.fixture(autouse=True)
def _ray(ray_session):
    """Ingest runs its files as Ray tasks: the session's Ray."""


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real data not found at {path}; set IIDS_DATA_DIR")


def _rows(out: Path) -> pa.Table:
    return pads.dataset(out, format="parquet", partitioning="hive").to_table()


def test_real_edge_iiotset_capture(tmp_path):
    _need(EDGE_RAW)
    out = tmp_path / "edge"
    manifest = ingest(get_adapter("edge-iiotset"), [str(EDGE_RAW)], str(out))

    assert manifest["rows_read"] == 1001
    assert manifest["rows_read"] == (
        manifest["rows_written"] + manifest["rows_quarantined"]
    )
    assert manifest["rows_quarantined"] == 0, manifest["quarantined_by_reason"]
    rows = _rows(out).sort_by("source_line")
    assert rows.num_rows == 1001
    assert set(rows["Attack_type"].to_pylist()) == {"Fingerprinting"}
    assert set(rows["Attack_label"].to_pylist()) == {"1"}

    # Raw spellings become numbers: hex checksums, `0`, `0.0`; text is trimmed.
    first = rows.slice(0, 1).to_pylist()[0]
    assert first["icmp.checksum"] == 0x2EA2
    assert first["arp.opcode"] == 0.0
    assert first["frame.time"] == "2021 22:14:30.939803000"
    assert first["ip.src_host"] == "192.168.0.170"
    assert first["source_line"] == 2


def _sample(path: Path, rows: int) -> pa.Table:
    """Every k-th row of a real file, about `rows` of them, as text."""
    options = pacsv.ConvertOptions(
        column_types={"ID": pa.int64(), **{f"DATA_{i}": pa.int64() for i in range(8)}}
    )
    table = pacsv.read_csv(path, convert_options=options)
    step = max(1, table.num_rows // rows)
    return table.take(np.arange(0, table.num_rows, step)[:rows])


def _encode(table: pa.Table, encoding: str) -> str:
    """The table as CSV text with ID and bytes written in one CICIoV2024 encoding."""
    write = {
        "decimal": lambda v, width: str(v),
        "hex": lambda v, width: format(v, "X").zfill(width // 4),
        "binary": lambda v, width: format(v, "b").zfill(width),
    }[encoding]
    names = table.column_names
    columns = table.to_pydict()
    lines = [",".join(names)]
    for i in range(table.num_rows):
        cells = []
        for name in names:
            value = columns[name][i]
            if name == "ID":
                cells.append(write(value, 12))
            elif name.startswith("DATA_"):
                cells.append(write(value, 8))
            else:
                cells.append(value)
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def test_real_ciciov2024_encodings_decode_to_the_same_rows(tmp_path):
    files = sorted(CIC_DIR.glob("decimal_*.csv*"))
    if len(files) < 6:
        pytest.skip(f"real CICIoV2024 files not found in {CIC_DIR}; set IIDS_DATA_DIR")
    samples = {
        f.name.split(".")[0].removeprefix("decimal_"): _sample(f, SAMPLE_ROWS)
        for f in files
    }

    tables = {}
    for encoding in ("decimal", "hex", "binary"):
        folder = tmp_path / encoding
        folder.mkdir()
        for name, sample in samples.items():
            (folder / f"{name}.csv").write_text(_encode(sample, encoding))
        out = tmp_path / f"out-{encoding}"
        adapter = get_adapter("ciciov2024", encoding=encoding)
        manifest = ingest(adapter, [str(folder)], str(out))
        assert manifest["rows_quarantined"] == 0, manifest["quarantined_by_reason"]
        assert manifest["rows_written"] == sum(s.num_rows for s in samples.values())
        tables[encoding] = (
            _rows(out)
            .drop_columns(["source_file"])
            .sort_by([("source", "ascending"), ("source_line", "ascending")])
        )

    assert tables["hex"].equals(tables["decimal"])
    assert tables["binary"].equals(tables["decimal"])
    dos = tables["decimal"].filter(pc.equal(tables["decimal"]["source"], "DoS"))
    assert set(dos["ID"].to_pylist()) == {291.0}


@pytest.mark.parametrize("dataset", ["ciciov2024", "edge-iiotset"])
def test_synthetic_data_ingest_without_quarantine(tmp_path, dataset):
    meta = synth(dataset, 4000, 11, tmp_path / "raw")
    adapter = get_adapter(dataset)
    manifest = ingest(adapter, [meta["path"]], str(tmp_path / "out"))
    assert manifest["rows_read"] == 4000
    assert manifest["rows_quarantined"] == 0, manifest["quarantined_by_reason"]

    rows = _rows(tmp_path / "out")
    task = adapter.task(None)
    labels = rows[task.label_column].to_pylist()
    counts = {name: 0 for name in task.classes}
    for label in labels:
        counts[task.class_of(label)] += 1
    assert counts == meta["class_counts"]
