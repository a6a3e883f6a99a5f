"""The platform on a real S3 server (SeaweedFS on loopback): ingest, bundles, scoring.

Everything a nightly run reads and writes lives in the bucket; only the raw export and
the bundle's first copy start out on local disk.
"""

from __future__ import annotations

import re
import socket
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from iids.batch import SUCCESS, score_dataset
from iids.bundle import load_bundle, promote
from iids.data import dataset_files
from iids.datasets import get_adapter
from iids.ingest import MANIFEST, ingest
from iids.scoring import Scorer
from iids.storage import Storage, StorageError, join, split_s3
from tests.builders import can_csv, can_rows, tiny_bundle

DAY = "2026-12-02"


@pytest.fixture(scope="module")
def s3(s3_server, ray_session):
    """The S3 server, with Ray running for ingest and scoring."""
    return s3_server


@pytest.fixture(scope="module")
def nightly(s3, tmp_path_factory) -> tuple[str, str]:
    """One night of CAN logs ingested into the bucket, and a bundle uploaded beside it."""
    root = tmp_path_factory.mktemp("s3-nightly")
    can_csv(root / "raw" / "can.csv", 900, seed=4)
    logs = s3.uri("nightly", "logs")
    ingest(
        get_adapter("ciciov2024"),
        [str(root / "raw")],
        logs,
        storage=s3.storage,
        day=DAY,
    )
    local = tiny_bundle(root / "models")
    bundle = s3.uri("nightly", "models", local.rsplit("/", 1)[-1])
    s3.storage.upload_dir(local, bundle)
    return logs, bundle


def _keys(s3, prefix: str) -> list[str]:
    """Every object key under `prefix` in the bucket."""
    pages = s3.storage.s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=prefix
    )
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _rows(storage: Storage, uri: str, partition: str | None = None) -> int:
    """Rows in the Parquet data files of a dataset on S3."""
    fs, _ = storage.filesystem(uri)
    files = dataset_files(uri, storage, partition)
    return pads.dataset(files, filesystem=fs, format="parquet").count_rows()


def test_ingest_into_s3_accounts_for_every_row_and_a_rerun_replaces(s3, tmp_path):
    # A raw export with one row that cannot be parsed.
    raw = tmp_path / "raw" / "can.csv"
    can_csv(raw, 500, seed=3)
    with raw.open("a") as f:
        f.write("not-a-number,1,2,3,4,5,6,7,8,BENIGN,BENIGN,BENIGN\n")
    adapter = get_adapter("ciciov2024")
    logs = s3.uri("ingest", "logs")
    day_uri = join(logs, f"day={DAY}")

    first = ingest(adapter, [str(raw)], logs, storage=s3.storage, day=DAY)
    manifest = s3.storage.read_json(join(day_uri, MANIFEST))
    assert manifest["rows_read"] == 501
    assert manifest["rows_written"] == 500 == _rows(s3.storage, day_uri)
    assert manifest["rows_quarantined"] == 1
    assert manifest["quarantined_by_reason"] == {"unparseable_number": 1}
    assert manifest["output"] == day_uri == first["output"]

    # The same night again replaces the partition instead of adding to it.
    ingest(adapter, [str(raw)], logs, storage=s3.storage, day=DAY)
    again = s3.storage.read_json(join(day_uri, MANIFEST))
    assert again["rows_written"] == 500 == _rows(s3.storage, day_uri)
    objects = [k for k in _keys(s3, "ingest/") if not k.endswith("/")]
    assert sorted(objects) == [
        f"ingest/logs/day={DAY}/{MANIFEST}",
        f"ingest/logs/day={DAY}/_quarantine/source=can/part-0000.parquet",
        f"ingest/logs/day={DAY}/source=can/part-0000.parquet",
    ]


def test_bundle_on_s3_scores_like_the_local_copy(s3, tmp_path):
    local = tiny_bundle(tmp_path / "models", seed=5)
    version = local.rsplit("/", 1)[-1]
    uri = s3.uri("bundles", version)
    s3.storage.upload_dir(local, uri)

    remote = load_bundle(uri, s3.storage)
    assert remote.version == version
    rows = can_rows(120, seed=6)
    codes, proba = Scorer(remote).score(rows)
    local_codes, local_proba = Scorer.from_uri(local).score(rows)
    np.testing.assert_array_equal(codes, local_codes)
    np.testing.assert_allclose(proba, local_proba, rtol=1e-6)
    assert remote.classes == Scorer.from_uri(local).classes


def test_batch_scoring_s3_to_s3_publishes_once_and_a_rerun_replaces(s3, nightly):
    logs, bundle = nightly
    out = s3.uri("nightly", "predictions")
    target = join(out, f"day={DAY}")

    first = score_dataset(bundle, logs, out, day=DAY, storage=s3.storage)
    assert first["rows_in"] == first["rows_scored"] == 900
    assert first["output"] == target
    again = score_dataset(bundle, logs, out, day=DAY, storage=s3.storage)
    assert again["rows_scored"] == 900

    # One prediction per input row, once, with the manifest written last.
    fs, path = s3.storage.filesystem(target)
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    assert table.num_rows == 900
    assert len(set(table["row_key"].to_pylist())) == 900
    assert set(table["model_version"].to_pylist()) == {bundle.rsplit("/", 1)[-1]}
    success = s3.storage.read_json(join(target, SUCCESS))
    assert success["rows_scored"] == 900
    assert success["input_fingerprint"] == first["input_fingerprint"]
    keys = _keys(s3, "nightly/predictions/")
    assert not [k for k in keys if ".staging-" in k]
    assert f"nightly/predictions/day={DAY}/{SUCCESS}" in keys


def test_a_night_given_the_models_root_scores_with_the_promoted_bundle(
    s3, nightly, tmp_path
):
    logs, first = nightly
    root = first.rsplit("/", 1)[0]
    local = tiny_bundle(tmp_path / "models", seed=9)
    second = join(root, local.rsplit("/", 1)[-1])
    s3.storage.upload_dir(local, second)
    out = s3.uri("promoted", "predictions")

    def night_versions() -> tuple[str, set[str]]:
        summary = score_dataset(root, logs, out, day=DAY, storage=s3.storage)
        assert summary["rows_scored"] == 900
        fs, path = s3.storage.filesystem(join(out, f"day={DAY}"))
        table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
        return summary["model_bundle"], set(table["model_version"].to_pylist())

    # Nothing promoted yet: the root is no bundle, and nothing is published.
    with pytest.raises(FileNotFoundError, match=f"{root} is not a model bundle"):
        score_dataset(root, logs, out, day=DAY, storage=s3.storage)
    assert not _keys(s3, "promoted/")

    promote(first, s3.storage)
    assert promote(second, s3.storage)["previous_version"] == first.rsplit("/", 1)[-1]
    assert night_versions() == (second, {second.rsplit("/", 1)[-1]})
    # Promoting the older bundle again rolls the next night back to it.
    promote(first, s3.storage)
    assert night_versions() == (first, {first.rsplit("/", 1)[-1]})


def test_quarantined_rows_are_published_on_s3_with_the_night(s3, tmp_path):
    # Rows written by another tool, one with a NaN, uploaded as one night.
    rows = can_rows(200, seed=13)
    rows = rows.append_column("row_key", pa.array([f"k{i:03d}" for i in range(200)]))
    data_2 = rows["DATA_2"].to_pylist()
    data_2[7] = float("nan")
    rows = rows.set_column(3, "DATA_2", pa.array(data_2))
    local = tmp_path / "logs" / f"day={DAY}"
    local.mkdir(parents=True)
    pq.write_table(rows, local / "part-0.parquet")
    logs = s3.uri("quarantine", "logs")
    s3.storage.upload_dir(str(tmp_path / "logs"), logs)
    bundle = tiny_bundle(tmp_path / "models")
    out = s3.uri("quarantine", "predictions")
    target = join(out, f"day={DAY}")

    summary = score_dataset(bundle, logs, out, day=DAY, storage=s3.storage)

    assert (summary["rows_in"], summary["rows_scored"]) == (200, 199)
    assert summary["quarantined_by_reason"] == {"nonfinite_number": 1}
    assert summary["quarantine"] == join(target, "_quarantine")
    fs, path = s3.storage.filesystem(summary["quarantine"])
    quarantined = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    assert quarantined.select(["row_key", "column", "value"]).to_pylist() == [
        {"row_key": "k007", "column": "DATA_2", "value": "nan"}
    ]
    keys = _keys(s3, "quarantine/predictions/")
    assert not [k for k in keys if ".staging-" in k]
    assert f"quarantine/predictions/day={DAY}/{SUCCESS}" in keys


# -- errors that tell the operator what to fix --------------------------------------------


def _error_pattern(operation: str, uri: str) -> str:
    """What a StorageError for `operation` on `uri` must say."""
    bucket, key = split_s3(uri)
    return (
        rf"S3 {operation} failed for bucket {re.escape(repr(bucket))}, "
        rf"key {re.escape(repr(key))} at .*Check that the bucket exists, that "
        r"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are valid"
    )


def test_wrong_access_key_names_bucket_key_and_operation(s3, monkeypatch):
    uri = s3.uri("errors", "note.json")
    s3.storage.write_json(uri, {"night": DAY})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
    wrong = Storage(endpoint_override=s3.endpoint, region="us-east-1")

    with pytest.raises(StorageError, match=_error_pattern("get", uri)):
        wrong.read_json(uri)
    with pytest.raises(StorageError, match=_error_pattern("put", uri)):
        wrong.write_json(uri, {})
    with pytest.raises(StorageError, match=_error_pattern("stat", uri)):
        wrong.exists(uri)
    # The object is untouched.
    assert s3.storage.read_json(uri) == {"night": DAY}


def test_missing_bucket_names_bucket_key_and_operation(s3):
    # Reads only: SeaweedFS creates a missing bucket on upload for admin keys.
    uri = "s3://no-such-bucket/models/manifest.json"
    with pytest.raises(StorageError, match=_error_pattern("get", uri)) as error:
        s3.storage.read_json(uri)
    assert "NoSuchBucket" in str(error.value)


def test_refused_connection_fails_fast_and_names_the_endpoint(s3):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    down = Storage(endpoint_override=endpoint, connect_timeout_s=1.0, max_attempts=1)
    uri = s3.uri("errors", "note.json")

    started = time.monotonic()
    with pytest.raises(StorageError, match=_error_pattern("get", uri)) as error:
        down.read_json(uri)
    with pytest.raises(StorageError, match=_error_pattern("stat", uri)):
        down.exists(uri)
    assert endpoint in str(error.value)
    assert time.monotonic() - started < 10
