"""Nightly batch scoring: one prediction per row, published once, reruns replace.

Rows that cannot be scored are quarantined beside the predictions, a night that cannot be
scored at all publishes nothing, and a scoring actor killed mid-night is replaced without
losing or repeating a row.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from iids.batch import SUCCESS, SUMMARY_MD, score_dataset
from iids.datasets import get_adapter
from iids.ingest import ingest
from iids.preprocess import FeatureError
from iids.scoring import Scorer
from tests.builders import can_csv, can_rows, tiny_bundle

DAY = "2026-12-02"


@pytest.fixture(scope="module")
def logs(ray_session, tmp_path_factory) -> tuple[Path, str]:
    """Two nights of CAN logs (day partitions) and an untrained bundle."""
    root = tmp_path_factory.mktemp("nightly")
    adapter = get_adapter("ciciov2024")
    can_csv(root / "raw" / DAY / "can.csv", 5000, seed=1)
    can_csv(root / "raw" / "2026-12-01" / "can.csv", 700, seed=2)
    for day in (DAY, "2026-12-01"):
        ingest(adapter, [str(root / "raw" / day)], str(root / "logs"), day=day)
    (root / "raw" / "empty").mkdir()
    (root / "raw" / "empty" / "can.csv").write_text(
        ",".join(adapter.column_names) + "\n"
    )
    ingest(adapter, [str(root / "raw" / "empty")], str(root / "logs"), day="2026-12-03")
    return root, tiny_bundle(root / "models")


def _predictions(path: Path):
    return pads.dataset(path, format="parquet").to_table()


def test_one_prediction_per_row_and_a_rerun_replaces(logs):
    root, bundle = logs
    out = root / "predictions"
    first = score_dataset(bundle, str(root / "logs"), str(out), day=DAY)
    assert first["rows_in"] == first["rows_scored"] == 5000
    again = score_dataset(bundle, str(root / "logs"), str(out), day=DAY)
    table = _predictions(out / f"day={DAY}")
    assert table.num_rows == 5000 == again["rows_scored"]
    assert len(set(table["row_key"].to_pylist())) == 5000
    manifest = json.loads((out / f"day={DAY}" / SUCCESS).read_text())
    assert manifest["rows_scored"] == 5000
    assert manifest["input_fingerprint"] == first["input_fingerprint"]
    assert (out / f"day={DAY}" / "_summary.md").read_text().count("|") > 6
    assert not list(out.glob("*.staging-*"))
    # Only the night asked for was read.
    assert "day=2026-12-01" not in {p.name for p in out.iterdir()}


def test_a_night_is_written_in_files_of_up_to_the_rows_per_file(logs, monkeypatch):
    import iids.batch

    root, bundle = logs
    out = root / "predictions-files"
    monkeypatch.setattr(iids.batch, "_ROWS_PER_FILE", 1500)
    # 5,000 rows scored 500 at a time, written up to 1,500 rows per file: about four
    # files (a file ends early where a block of the input ends), not ten.
    score_dataset(bundle, str(root / "logs"), str(out), day=DAY, batch_size=500)
    sizes = sorted(
        pq.read_metadata(path).num_rows
        for path in (out / f"day={DAY}").glob("*.parquet")
    )
    assert sum(sizes) == 5000
    assert max(sizes) <= 1500 and len(sizes) <= 5, sizes


def test_predictions_equal_the_scoring_core_on_the_same_rows(logs):
    root, bundle = logs
    out = root / "predictions-core"
    score_dataset(bundle, str(root / "logs"), str(out), day="2026-12-01")
    batch = _predictions(out / "day=2026-12-01").sort_by("row_key")
    rows = pads.dataset(
        root / "logs" / "day=2026-12-01", format="parquet", partitioning="hive"
    ).to_table()
    scorer = Scorer.from_uri(bundle)
    codes, proba = scorer.score(rows)
    keys = [
        f"{f}:{line}"
        for f, line in zip(
            rows["source_file"].to_pylist(),
            rows["source_line"].to_pylist(),
            strict=True,
        )
    ]
    order = np.argsort(keys)
    expected = np.asarray(scorer.classes)[codes][order]
    assert batch["predicted_class"].to_pylist() == expected.tolist()
    np.testing.assert_allclose(
        batch["probability"].to_numpy(), proba[order, codes[order]], rtol=1e-5
    )


def test_empty_day_gives_a_zero_row_summary(logs):
    root, bundle = logs
    summary = score_dataset(
        bundle, str(root / "logs"), str(root / "p"), day="2026-12-03"
    )
    assert summary["rows_in"] == summary["rows_scored"] == 0
    assert (root / "p" / "day=2026-12-03" / SUCCESS).is_file()


def test_missing_day_is_a_clear_error(logs):
    root, bundle = logs
    with pytest.raises(
        FileNotFoundError,
        match=r"no partition 'day=2026-11-30'; it has day=2026-12-01, day=2026-12-02, "
        r"day=2026-12-03$",
    ):
        score_dataset(bundle, str(root / "logs"), str(root / "p"), day="2026-11-30")
    with pytest.raises(ValueError, match="day must be a date written YYYY-MM-DD"):
        score_dataset(bundle, str(root / "logs"), str(root / "p"), day="yesterday")


def test_nightly_job_with_a_missing_bundle_exits_1_naming_it(logs, caplog):
    from jobs import score_nightly

    root, _ = logs
    missing = root / "models" / "no-such-version"
    argv = ["--model", str(missing), "--input", str(root / "logs")]
    argv += ["--output", str(root / "p-job"), "--day", DAY]

    with caplog.at_level(logging.ERROR):
        code = score_nightly.main(argv)

    assert code == 1
    assert caplog.records[-1].getMessage() == (
        f"scoring failed: {missing}: no such model bundle (nothing is there). Pass "
        "the directory that `iids train` printed (…/models/<version>)."
    )
    assert not (root / "p-job").exists()


def test_alert_threshold_flags_the_night(logs):
    root, bundle = logs
    summary = score_dataset(
        bundle, str(root / "logs"), str(root / "alert"), day=DAY, alert_attack_share=0.0
    )
    assert summary["attack_share"] > 0
    assert summary["alert"].startswith("ALERT: ")
    assert f"day={DAY}" in summary["alert"]


# -- rows that cannot be scored, nights that cannot be scored, actors that die ------------


def _keyed_rows(n: int, seed: int) -> pa.Table:
    """`n` typed CAN rows with a `row_key` (`r0000`, ...)."""
    rows = can_rows(n, seed=seed)
    return rows.append_column("row_key", pa.array([f"r{i:04d}" for i in range(n)]))


def _with_cells(rows: pa.Table, column: str, cells: dict[int, object], type_=None):
    """`rows` with some cells of `column` replaced (and the column cast to `type_`)."""
    values = rows[column].to_pylist()
    if type_ == pa.string():
        values = [str(int(v)) for v in values]
    for i, value in cells.items():
        values[i] = value
    index = rows.column_names.index(column)
    return rows.set_column(index, column, pa.array(values, type_ or rows[column].type))


def test_rows_that_cannot_be_scored_are_quarantined_beside_the_night(
    ray_session, tmp_path
):
    # Logs written by another tool: a NaN, an infinity, an empty cell, text that is
    # not a number, and one row with two faults, in two files of one night.
    rows = _keyed_rows(400, seed=8)
    rows = _with_cells(rows, "DATA_2", {5: float("nan"), 9: float("inf")})
    rows = _with_cells(rows, "DATA_2", {30: float("nan")})
    rows = _with_cells(rows, "ID", {12: None})
    rows = _with_cells(rows, "DATA_5", {20: "n/a", 30: "x"}, type_=pa.string())
    night = tmp_path / "logs" / "day=2026-12-04"
    night.mkdir(parents=True)
    pq.write_table(rows.slice(0, 200), night / "part-0.parquet")
    pq.write_table(rows.slice(200), night / "part-1.parquet")
    bundle = tiny_bundle(tmp_path / "models")
    out = tmp_path / "predictions"
    target = out / "day=2026-12-04"

    summary = score_dataset(
        bundle, str(tmp_path / "logs"), str(out), day="2026-12-04", batch_size=64
    )

    # Every row is accounted for, once, in the summary and its manifest.
    assert summary["rows_in"] == 400
    assert summary["rows_scored"] == 395 == sum(summary["rows_per_class"].values())
    assert summary["rows_quarantined"] == 5
    assert summary["quarantined_by_reason"] == {
        "nonfinite_number": 3,
        "missing_value": 1,
        "unparseable_number": 1,
    }
    assert summary["quarantine"] == str(target / "_quarantine")
    manifest = json.loads((target / SUCCESS).read_text())
    assert manifest["rows_quarantined"] == 5
    assert manifest["quarantined_by_reason"] == summary["quarantined_by_reason"]
    markdown = (target / SUMMARY_MD).read_text()
    assert "400 rows in, 395 scored, 5 quarantined" in markdown
    assert f"`{target / '_quarantine'}`" in markdown
    assert "| nonfinite_number | 3 |" in markdown

    # Readers of the night see the predictions only, one per good row.
    predictions = pads.dataset(target, format="parquet").to_table()
    bad = {"r0005", "r0009", "r0012", "r0020", "r0030"}
    keys = predictions["row_key"].to_pylist()
    assert len(keys) == len(set(keys)) == 395
    assert set(keys) == {f"r{i:04d}" for i in range(400)} - bad

    # Each quarantined row names its column, the value found and the reason.
    quarantined = pq.read_table(target / "_quarantine").sort_by("row_key")
    found = quarantined.select(["row_key", "column", "reason", "value"])
    assert [tuple(r.values()) for r in found.to_pylist()] == [
        ("r0005", "DATA_2", "nonfinite_number", "nan"),
        ("r0009", "DATA_2", "nonfinite_number", "inf"),
        ("r0012", "ID", "missing_value", None),
        ("r0020", "DATA_5", "unparseable_number", "n/a"),
        ("r0030", "DATA_2", "nonfinite_number", "nan"),
    ]
    details = {r["row_key"]: r["detail"] for r in quarantined.to_pylist()}
    assert details["r0020"] == "column DATA_5: expected a base-10 number, found 'n/a'"
    assert details["r0009"] == "column DATA_2: expected a finite number, found 'inf'"
    assert set(quarantined["model_version"].to_pylist()) == {summary["model_version"]}


def test_a_file_without_a_feature_column_fails_the_night_and_publishes_nothing(
    ray_session, tmp_path
):
    data, out = tmp_path / "logs", tmp_path / "predictions"
    data.mkdir()
    pq.write_table(_keyed_rows(300, seed=10), data / "part-0.parquet")
    bundle = tiny_bundle(tmp_path / "models")
    first = score_dataset(bundle, str(data), str(out))
    assert first["rows_scored"] == 300

    # A second export arrives without DATA_7: the whole night is refused.
    pq.write_table(
        _keyed_rows(50, seed=11).drop_columns(["DATA_7"]), data / "x.parquet"
    )
    with pytest.raises(
        FeatureError,
        match=r"x\.parquet: missing feature column\(s\) \['DATA_7'\] that model .* "
        r"needs",
    ):
        score_dataset(bundle, str(data), str(out))

    # The previous output stands as it was; nothing half-written is left beside it.
    assert json.loads((out / SUCCESS).read_text()) == first
    assert pads.dataset(out, format="parquet").count_rows() == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logs",
        "models",
        "predictions",
    ]


def test_files_keyed_two_ways_fail_the_night_naming_both(ray_session, tmp_path):
    # One export keys its rows by `row_key`, another only by ingest's file and line.
    data, out = tmp_path / "logs", tmp_path / "predictions"
    data.mkdir()
    pq.write_table(_keyed_rows(100, seed=12), data / "a.parquet")
    rows = can_rows(100, seed=13)
    rows = rows.append_column("source_file", pa.array(["can.csv"] * 100))
    rows = rows.append_column("source_line", pa.array(np.arange(2, 102)))
    pq.write_table(rows, data / "b.parquet")
    bundle = tiny_bundle(tmp_path / "models")

    with pytest.raises(
        ValueError,
        match=r"a\.parquet keys its rows by `row_key` only, but .*b\.parquet has no "
        r"`row_key`",
    ):
        score_dataset(bundle, str(data), str(out))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "models"]


def _scoring_actors() -> dict[str, dict]:
    """This Ray's live scoring actors by id, with their process id and restarts.

    Ray's state API needs the dashboard, which the test session does not start; the
    actor table it reads is the same.
    """
    from ray._private import state

    return {
        actor_id: actor
        for actor_id, actor in state.actors().items()
        if "_ScoringActor" in actor["ActorClassName"] and actor["State"] == "ALIVE"
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_scoring_actor_killed_mid_night_is_replaced_and_every_row_scored_once(
    ray_session, tmp_path
):
    from ray._private import state

    data, out = tmp_path / "logs", tmp_path / "predictions"
    data.mkdir()
    # Enough rows for several seconds of one actor's time (about 150,000 rows/s here).
    rows = _keyed_rows(720_000, seed=12)
    for i in range(6):
        pq.write_table(rows.slice(i * 120_000, 120_000), data / f"part-{i}.parquet")
    bundle = tiny_bundle(tmp_path / "models")

    # Score in the background with one actor: the night takes several seconds.
    result: dict = {}

    def night() -> None:
        try:
            result["summary"] = score_dataset(
                bundle, str(data), str(out), num_actors=1, batch_size=1024
            )
        except BaseException as exc:  # reported by the assertions below
            result["error"] = exc

    runner = threading.Thread(target=night)
    runner.start()

    # Once the actor has loaded the bundle and scored for a second, kill its process.
    deadline = time.monotonic() + 300
    while not (actors := _scoring_actors()):
        assert runner.is_alive(), f"the night ended before any kill: {result}"
        assert time.monotonic() < deadline, "no scoring actor started in 300 s"
        time.sleep(0.05)
    assert len(actors) == 1, actors
    [(actor_id, actor)] = actors.items()
    loaded_s = _cpu_s(actor["Pid"])
    while _cpu_s(actor["Pid"]) < loaded_s + 1.0:
        assert runner.is_alive(), f"the night ended before any kill: {result}"
        assert time.monotonic() < deadline, "the scoring actor did not start scoring"
        time.sleep(0.05)
    os.kill(actor["Pid"], signal.SIGKILL)
    killed_mid_night = runner.is_alive()
    runner.join(timeout=600)

    # The night completed: every row scored exactly once, by a restarted actor.
    assert killed_mid_night
    assert not runner.is_alive()
    assert "error" not in result, result.get("error")
    assert result["summary"]["rows_in"] == result["summary"]["rows_scored"] == 720_000
    keys = pads.dataset(out, format="parquet").to_table()["row_key"].to_pylist()
    assert len(keys) == len(set(keys)) == 720_000
    assert state.actors(actor_id)["NumRestarts"] >= 1
    assert not list(tmp_path.glob("*.staging-*"))
