"""`iids submit` against a real Ray head started by `infra/local/start.sh`.

The head runs in its own short state directory on free ports and is stopped by
`infra/local/stop.sh`, so the local stack scripts are exercised too. Ray 2.60 enables
token authentication on it when `~/.ray/auth_token` exists; submission then goes
through `local_auth_token`. The jobs are cheap on purpose (the entry point's `--help`,
and a bad flag), so the whole module takes about a minute.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iids.cli import app
from iids.submit import EXIT_CODES, local_auth_token, submit

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "jobs" / "configs" / "quickstart.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head from infra/local/start.sh --no-s3; yields its dashboard URL."""
    if shutil.which("curl") is None or shutil.which("setsid") is None:
        pytest.skip("infra/local/start.sh needs curl and setsid")
    # Ray's socket paths must stay short, so not pytest's tmp_path.
    state = tempfile.mkdtemp(prefix="iids-sub.", dir="/tmp")
    ports = {
        "IIDS_RAY_PORT": _free_port(),
        "IIDS_RAY_DASHBOARD_PORT": _free_port(),
        "IIDS_RAY_CLIENT_PORT": _free_port(),
        "IIDS_RAY_AGENT_PORT": _free_port(),
    }
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "IIDS_LOCAL_STATE": state,
        "IIDS_RAY_CPUS": "2",
        "IIDS_START_TIMEOUT_S": "120",
    }
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    start = subprocess.run(
        [str(ROOT / "infra/local/start.sh"), "--no-s3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert start.returncode == 0, start.stderr
        address = f"http://127.0.0.1:{ports['IIDS_RAY_DASHBOARD_PORT']}"
        assert f"export IIDS_RAY_DASHBOARD={address}" in start.stdout
        # A second start finds the head running and leaves it alone.
        again = subprocess.run(
            [str(ROOT / "infra/local/start.sh"), "--no-s3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 0 and "already running" in again.stderr
        yield address
    finally:
        subprocess.run(
            [str(ROOT / "infra/local/stop.sh")], env=env, timeout=120, check=False
        )
        assert not (Path(state) / "ray.pid").exists()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    # Ray lets these override the address a client is given.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)


def test_submit_follow_streams_logs_and_succeeds(ray_head):
    chunks: list[str] = []

    result = submit(
        "train",
        ray_head,
        CONFIG,
        follow=True,
        job_args=["--help"],
        install_pip=False,
        auth_token=local_auth_token(ray_head),
        write=chunks.append,
    )

    logs = "".join(chunks)
    assert result.status == "SUCCEEDED"
    assert result.exit_code == EXIT_CODES["SUCCEEDED"] == 0
    assert result.job_id.startswith("raysubmit_")
    assert "python jobs/train.py --config jobs/configs/quickstart.yaml" in logs
    assert "--run-name" in logs  # the entry point's own usage text


def test_cli_submit_exits_non_zero_when_the_job_fails(ray_head, tmp_path):
    out = tmp_path / "result.json"

    run = CliRunner().invoke(
        app,
        [
            "submit",
            "train",
            "--address",
            ray_head,
            "--config",
            str(CONFIG),
            "--no-pip",
            "--follow",
            "--json-out",
            str(out),
            "--",
            "--no-such-flag",
        ],
    )

    assert run.exit_code == EXIT_CODES["FAILED"] == 1, run.output
    assert "unrecognized arguments: --no-such-flag" in run.output
    assert "ended FAILED" in run.output
    assert '"status": "FAILED"' in out.read_text()
