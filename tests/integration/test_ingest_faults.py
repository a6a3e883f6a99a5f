"""Ingest faults: every bad row is quarantined with a reason, bad files stop the ingest.

Each test writes a small CSV by hand, ingests it on a local Ray, and checks the numbers
a data engineer reads in `_manifest.json` and `_quarantine`.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from iids.datasets import canonical_category, generic_from_dict, get_adapter
from iids.ingest import QUARANTINE_DIR, IngestError, ingest

pytestmark = pytest.mark.integration

HEADER = ",".join(get_adapter("ciciov2024").column_names)
GOOD = "513,0,0,0,0,0,0,0,125,ATTACK,SPOOFING,GAS"
BENIGN = "65,96,0,0,0,0,0,0,0,BENIGN,BENIGN,BENIGN"


@pytest.fixture(autouse=True)
def _ray(ray_session):
    """Ingest runs its files as Ray tasks: the session's Ray."""


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ingest(adapter, inputs, out: Path):
    """Ingest; return the manifest, the good rows and the quarantined rows."""
    manifest = ingest(adapter, [str(p) for p in inputs], str(out))
    assert manifest["rows_read"] == (
        manifest["rows_written"] + manifest["rows_quarantined"]
    )
    good = pads.dataset(out, format="parquet", partitioning="hive").to_table()
    bad_dir = out / QUARANTINE_DIR
    bad = (
        pads.dataset(bad_dir, format="parquet", partitioning="hive").to_table()
        if bad_dir.exists()
        else pa.table({"reason": pa.array([], pa.string())})
    )
    return manifest, good, bad


def _one_bad_row(tmp_path, bad_row: str):
    """Ingest two good rows around one bad row; return (manifest, quarantine row)."""
    src = _write(tmp_path / "in" / "frames.csv", [HEADER, GOOD, bad_row, BENIGN])
    manifest, good, bad = _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    assert manifest["rows_read"] == 3
    assert manifest["rows_written"] == 2
    assert manifest["rows_quarantined"] == 1
    assert sorted(good["source_line"].to_pylist()) == [2, 4]
    assert bad.num_rows == 1
    row = bad.to_pylist()[0]
    assert row["source_line"] == 3
    assert row["source_file"].endswith("frames.csv")
    assert manifest["quarantined_by_reason"] == {row["reason"]: 1}
    return manifest, row


# -- bad rows -------------------------------------------------------------------------


def test_wrong_field_count(tmp_path):
    _, row = _one_bad_row(tmp_path, "513,0,0,0,0,0,0,0,ATTACK,SPOOFING,GAS")
    assert row["reason"] == "field_count"
    assert row["detail"] == "expected 12 fields, found 11"
    assert row["raw"] == "513,0,0,0,0,0,0,0,ATTACK,SPOOFING,GAS"


def test_shifted_columns(tmp_path):
    _, row = _one_bad_row(
        tmp_path, "513,0,0,192.168.0.12,0,0,0,0,125,ATTACK,SPOOFING,GAS"
    )
    assert row["reason"] == "shifted_columns"
    assert "column DATA_2: '192.168.0.12' where a number belongs" in row["detail"]


def test_unparseable_number(tmp_path):
    _, row = _one_bad_row(tmp_path, "513,0,0,0,0,abc,0,0,125,ATTACK,SPOOFING,GAS")
    assert row["reason"] == "unparseable_number"
    assert row["detail"] == "column DATA_4: 'abc' is not a base-10 number"


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_non_finite_number(tmp_path, cell):
    _, row = _one_bad_row(tmp_path, f"513,0,0,0,0,0,0,{cell},125,ATTACK,SPOOFING,GAS")
    assert row["reason"] == "nonfinite_number"
    assert row["detail"] == f"column DATA_6: {cell!r} is not finite"


def test_empty_label(tmp_path):
    _, row = _one_bad_row(tmp_path, "513,0,0,0,0,0,0,0,125,ATTACK,SPOOFING,")
    assert row["reason"] == "unknown_label"
    assert row["detail"] == "column specific_class: '' is not a known label"


def test_unknown_label(tmp_path):
    _, row = _one_bad_row(tmp_path, "513,0,0,0,0,0,0,0,125,ATTACK,SPOOFING,BRAKES")
    assert row["reason"] == "unknown_label"
    assert row["detail"] == "column specific_class: 'BRAKES' is not a known label"


def test_every_fault_in_one_file_is_counted_by_reason(tmp_path):
    lines = [
        HEADER,
        GOOD,
        "513,0,0",
        "513,x,0,0,0,0,0,0,125,ATTACK,SPOOFING,GAS",
        "513,0,0,0,0,0,0,0,125,ATTACK,SPOOFING,BRAKES",
        "513,0,0,0,0,0,0,0,125,ATTACK,SPOOFING,GAS,extra",
        BENIGN,
    ]
    src = _write(tmp_path / "in" / "mixed.csv", lines)
    manifest, good, bad = _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    assert manifest["rows_read"] == 6
    assert manifest["rows_written"] == 2
    assert manifest["quarantined_by_reason"] == {
        "field_count": 2,
        "unparseable_number": 1,
        "unknown_label": 1,
    }
    assert sorted(bad["source_line"].to_pylist()) == [3, 4, 5, 6]
    assert sorted(good["source_line"].to_pylist()) == [2, 7]


# -- bad files ------------------------------------------------------------------------


def test_missing_columns_stop_the_ingest(tmp_path):
    src = _write(
        tmp_path / "in" / "short.csv",
        [HEADER.replace(",DATA_7", ""), "513,0,0,0,0,0,0,0,ATTACK,SPOOFING,GAS"],
    )
    with pytest.raises(IngestError, match=r"missing required column\(s\) \['DATA_7'\]"):
        _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    with pytest.raises(IngestError, match=r"(?s)expected: \['ID', .*found: +\["):
        _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_path_matching_no_file_stops_the_ingest(tmp_path):
    with pytest.raises(IngestError, match="no such file or directory"):
        _ingest(get_adapter("ciciov2024"), [tmp_path / "nope.csv"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="matches no data file"):
        _ingest(
            get_adapter("ciciov2024"), [tmp_path / "empty" / "*.csv"], tmp_path / "o"
        )


# -- valid quirks ---------------------------------------------------------------------


def test_bom_and_spaces_in_header_names_are_normalised(tmp_path):
    header = "\ufeff ID , " + HEADER.removeprefix("ID,").replace(",", " ,", 3)
    src = _write(tmp_path / "in" / "bom.csv", [header, GOOD, BENIGN])
    manifest, good, _ = _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    assert manifest["rows_written"] == 2
    assert manifest["rows_quarantined"] == 0
    assert sorted(good["ID"].to_pylist()) == [65.0, 513.0]


def test_header_only_files_are_skipped_and_markers_ignored(tmp_path):
    folder = tmp_path / "in"
    _write(folder / "frames.csv", [HEADER, GOOD, BENIGN])
    _write(folder / "empty_day.csv", [HEADER])
    (folder / "_SUCCESS").write_text("")
    manifest, good, _ = _ingest(get_adapter("ciciov2024"), [folder], tmp_path / "out")
    files = {Path(f["file"]).name: f for f in manifest["files"]}
    assert set(files) == {"frames.csv", "empty_day.csv"}
    assert files["empty_day.csv"]["skipped"] == "header only, 0 rows"
    assert files["empty_day.csv"]["rows_read"] == 0
    assert "skipped" not in files["frames.csv"]
    assert manifest["rows_read"] == manifest["rows_written"] == good.num_rows == 2


def test_zero_written_four_ways_is_one_number(tmp_path):
    rows = [
        f"{id_},{zero},0,0,0,0,0,0,0,BENIGN,BENIGN,BENIGN"
        for id_, zero in [(1, "0"), (2, '"0"'), (3, "0.0"), (4, "0x00"), (5, " 0 ")]
    ]
    src = _write(tmp_path / "in" / "zeros.csv", [HEADER, *rows])
    manifest, good, _ = _ingest(get_adapter("ciciov2024"), [src], tmp_path / "out")
    assert manifest["rows_quarantined"] == 0
    assert good["DATA_0"].to_pylist() == [0.0] * 5


def test_a_categorical_zero_written_three_ways_is_one_category(tmp_path):
    adapter = generic_from_dict(
        {
            "name": "plant",
            "features": [
                {"name": "pressure", "kind": "numeric"},
                {"name": "method", "kind": "categorical"},
            ],
            "label": "y",
            "classes": ["normal", "attack"],
        }
    )
    lines = [
        "pressure,method,y",
        "1,0,normal",
        '2,"0",attack',
        "3,0.0,normal",
        "4,GET,attack",
    ]
    src = _write(tmp_path / "in" / "plant.csv", lines)
    manifest, good, _ = _ingest(adapter, [src], tmp_path / "out")
    assert manifest["rows_written"] == 4
    good = good.sort_by("source_line")
    categories = canonical_category(good["method"]).to_pylist()
    assert categories == ["0", "0", "0", "GET"]


def test_plain_gzip_and_glob_inputs(tmp_path):
    plain = _write(tmp_path / "in" / "a_frames.csv", [HEADER, GOOD, BENIGN])
    zipped = tmp_path / "in" / "b_frames.csv.gz"
    with open(plain, "rb") as f, gzip.open(zipped, "wb") as g:
        shutil.copyfileobj(f, g)
    adapter = get_adapter("ciciov2024")

    manifest, good, _ = _ingest(
        adapter, [tmp_path / "in" / "*frames.csv*"], tmp_path / "o"
    )
    assert [Path(f["file"]).name for f in manifest["files"]] == [
        "a_frames.csv",
        "b_frames.csv.gz",
    ]
    assert manifest["rows_written"] == 4
    by_source = {
        s: good.filter(pc.equal(good["source"], s)).drop_columns(
            ["source", "source_file"]
        )
        for s in ("a_frames", "b_frames")
    }
    assert (
        by_source["a_frames"]
        .sort_by("source_line")
        .equals(by_source["b_frames"].sort_by("source_line"))
    )


def _parquet_inputs(tmp_path: Path, id_type: pa.DataType, data7_type: pa.DataType):
    import pyarrow.parquet as pq

    names = HEADER.split(",")
    cells = GOOD.split(",")
    ints = pa.table(
        {
            n: pa.array([int(c)], pa.int64())
            for n, c in zip(names[:9], cells, strict=False)
        }
        | {n: pa.array([c]) for n, c in zip(names[9:], cells[9:], strict=True)}
    )
    other = ints.set_column(0, "ID", ints["ID"].cast(id_type))
    other = other.set_column(8, "DATA_7", pa.array([cells[8]]).cast(data7_type))
    (tmp_path / "in").mkdir()
    pq.write_table(ints, tmp_path / "in" / "a.parquet")
    pq.write_table(other, tmp_path / "in" / "b.parquet")
    return tmp_path / "in"


def test_parquet_int_and_float_columns_are_promoted(tmp_path):
    folder = _parquet_inputs(tmp_path, pa.float64(), pa.float32())
    manifest, good, _ = _ingest(get_adapter("ciciov2024"), [folder], tmp_path / "out")
    assert manifest["rows_written"] == 2
    rows = good.drop_columns(["source", "source_file"]).to_pylist()
    assert rows[0] == rows[1]
    assert rows[0]["DATA_7"] == 125.0


def test_parquet_text_vs_number_column_is_an_error_naming_both(tmp_path):
    folder = _parquet_inputs(tmp_path, pa.int64(), pa.string())
    with pytest.raises(
        IngestError,
        match=r"b\.parquet: column 'DATA_7' is string here but int64 in .*a\.parquet",
    ):
        ingest(get_adapter("ciciov2024"), [str(folder)], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_nonfinite_cells_can_be_imputed_instead(tmp_path):
    src = _write(
        tmp_path / "in" / "frames.csv",
        [
            HEADER,
            GOOD,
            GOOD.replace(",125,", ",inf,"),
            BENIGN.replace("65,96", "65,NaN"),
        ],
    )
    manifest = ingest(
        get_adapter("ciciov2024"), [str(src)], str(tmp_path / "out"), nonfinite="impute"
    )
    assert manifest["rows_written"] == 3
    assert manifest["rows_quarantined"] == 0
    assert manifest["cells_imputed"] == {"DATA_7": 1, "DATA_0": 1}
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        ingest(
            get_adapter("ciciov2024"), [str(src)], str(tmp_path / "x"), nonfinite="drop"
        )


def test_constant_columns_are_reported(tmp_path):
    src = _write(tmp_path / "in" / "frames.csv", [HEADER, GOOD, BENIGN])
    manifest = ingest(get_adapter("ciciov2024"), [str(src)], str(tmp_path / "out"))
    assert manifest["constant_columns"] == [f"DATA_{i}" for i in range(1, 7)]
