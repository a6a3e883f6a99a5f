"""Training jobs on a real two-node Ray cluster, with every byte on S3.

The cluster is what a production one looks like, shrunk onto 127.0.0.1: a head node
without CPUs (it runs the job drivers and Ray Train's controller, never a training
worker) and one worker node with the CPUs, each started with `ray start --block` in a
process group and temp directory of its own, with token authentication on every node
and every client. The raw export, the ingested Parquet, Ray Train's run state
(checkpoints) and the model bundle all live on the session's SeaweedFS server.

Jobs go in through `iids.submit.submit`, from a copy of the project's source (iids/,
jobs/, pyproject.toml) that also holds the test's job configs: a job config must travel
with the job, and the real checkout is not written to. The recovery test kills the
worker node (SIGKILL to each of its processes, as when a machine dies) once the first
checkpoint is registered, starts a fresh worker node, and expects the job to finish
from the checkpoint without training a finished epoch twice. The module takes about
four minutes on 2 CPUs, most of it Ray starting worker processes: two training worker
groups, the jobs' drivers and their Ray Data tasks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from iids.storage import join
from iids.submit import submit
from tests.builders import can_csv

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3
RUN_NAME = "recovery"


# -- a two-node cluster on loopback -------------------------------------------------------


@dataclass
class _Node:
    """One `ray start --block` process group and the temp directory its processes name."""

    name: str
    temp_dir: Path
    log: Path
    process: subprocess.Popen


@dataclass
class _Cluster:
    """A head node without CPUs and worker nodes that take the training workers."""

    base: Path
    token: str
    env: dict[str, str]
    gcs_port: int
    dashboard: str
    nodes: list[_Node] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start_node(self, name: str, *args: str) -> _Node:
        """Start one node; each gets its own temp directory and worker port range."""
        temp_dir = self.base / name
        log = self.base / f"{name}.log"
        # Worker ports above Ray's default range (10002-19999), which the session's
        # in-process Ray uses, and below the kernel's ephemeral ports (32768 and up).
        first = 22000 + 2000 * len(self.nodes)
        command = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            f"--min-worker-port={first}",
            f"--max-worker-port={first + 1999}",
            f"--dashboard-agent-listen-port={_free_ports(1)[0]}",
            "--object-store-memory=400000000",
            "--disable-usage-stats",
            *args,
        ]
        with log.open("w") as out:
            process = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, to kill as one
            )
        node = _Node(name, temp_dir, log, process)
        self.nodes.append(node)
        return node

    def start_worker(self, name: str) -> _Node:
        """Start a worker node with the CPUs of both training workers; wait till it is up."""
        before = {n["node_id"] for n in self.alive_nodes()}
        node = self.start_node(
            name, f"--address=127.0.0.1:{self.gcs_port}", "--num-cpus=2"
        )
        self.wait_until(
            f"worker node {name}",
            node,
            lambda: any(n["node_id"] not in before for n in self.alive_nodes()),
        )
        return node

    def alive_nodes(self) -> list[dict]:
        """The nodes the head sees alive (Ray's state API over HTTP)."""
        url = f"{self.dashboard}/api/v0/nodes?detail=1"
        request = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=10) as reply:
            nodes = json.load(reply)["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def crash(self, node: _Node) -> None:
        """Kill every process of a node at once, as when its machine dies."""
        _kill(node, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every node this cluster started; kill what is left after 10 s."""
        # `ray start --block` stops its node's processes when it gets SIGTERM.
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.terminate()
        deadline = time.monotonic() + 10
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _kill(node, signal.SIGKILL)

    def wait_until(self, what: str, node: _Node, ready, timeout_s: float = 120) -> None:
        """Poll `ready()` until it is true; fail with the node's log if it never is."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass  # not answering yet
            if node.process.poll() is not None or time.monotonic() > deadline:
                tail = node.log.read_text().splitlines()[-20:]
                pytest.fail(
                    f"{what} did not come up (exit status {node.process.poll()}); "
                    f"the end of {node.log}:\n" + "\n".join(tail),
                    pytrace=False,
                )
            time.sleep(1)


def _kill(node: _Node, sig: signal.Signals) -> None:
    """Signal a node's process group, then any process left that names its temp dir."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.process.pid, sig)
    # Ray may start a process in a session of its own; each one names the temp dir.
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(node.temp_dir) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), sig)
    if node.process.poll() is None:
        node.process.wait(timeout=30)


def _free_ports(n: int) -> list[int]:
    """`n` free loopback ports, clear of Ray's worker ports and the ephemeral range."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(28000, 30000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A head (0 CPUs, dashboard, job server) and one worker node (2 CPUs)."""
    # Ray's socket paths must stay short, so not pytest's tmp_path.
    base = Path(tempfile.mkdtemp(prefix="iids-cr.", dir="/tmp"))
    gcs_port, dashboard_port, client_port = _free_ports(3)
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        # `python` in a job's entry point is this environment's Python.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # Every node and every Ray process on it: token auth with this cluster's own
        # token, never one from ~/.ray.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        # Ray's own clients on the nodes (Ray Train's placement group cleaner is one)
        # look for "the" local cluster; there may be others on this machine.
        "RAY_ADDRESS": f"127.0.0.1:{gcs_port}",
    }
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    nodes = _Cluster(base, token, env, gcs_port, dashboard)
    try:
        head = nodes.start_node(
            "head",
            "--head",
            f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            "--include-dashboard=true",
            f"--ray-client-server-port={client_port}",
            "--num-cpus=0",
        )
        nodes.wait_until("the Ray head", head, lambda: nodes.alive_nodes())
        nodes.start_worker("worker-1")
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- jobs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the source a job needs; the test's job configs go in its jobs/configs."""
    root = tmp_path_factory.mktemp("project")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("iids", "jobs"):
        shutil.copytree(ROOT / name, root / name, ignore=skip)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _client(cluster: _Cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard, headers=cluster.headers)


def _submit(
    cluster: _Cluster,
    project: Path,
    kind: str,
    config: dict,
    *,
    env_vars: dict[str, str] | None = None,
) -> str:
    """Write a job config into the project copy, submit it, return the job id."""
    path = project / "jobs" / "configs" / f"test-{kind}-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = submit(
        kind,
        cluster.dashboard,
        path,
        install_pip=False,
        auth_token=cluster.token,
        env_vars=env_vars,
        project_root=project,
    )
    return result.job_id


def _wait_for_job(cluster: _Cluster, job_id: str, timeout_s: float) -> tuple[str, str]:
    """The job's final status and its logs."""
    client = _client(cluster)
    deadline = time.monotonic() + timeout_s
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            logs = client.get_job_logs(job_id)
            pytest.fail(f"job {job_id} ran past {timeout_s} s:\n{logs[-4000:]}")
        time.sleep(1)
        status = client.get_job_status(job_id)
    return status.value, client.get_job_logs(job_id)


@pytest.fixture(scope="module")
def can_data(cluster, project, s3_server, tmp_path_factory) -> str:
    """3,000 CAN rows: a raw export uploaded to S3, ingested by a job on the cluster."""
    raw = tmp_path_factory.mktemp("raw") / "can.csv"
    can_csv(raw, 3000, seed=11)
    raw_uri = s3_server.uri("cluster", "raw", "can.csv")
    s3_server.storage.write_bytes(raw_uri, raw.read_bytes())
    data = s3_server.uri("cluster", "data")
    config = {"dataset": "ciciov2024", "inputs": [raw_uri], "output": data}

    job_id = _submit(cluster, project, "ingest", config, env_vars=_s3_env(s3_server))
    status, logs = _wait_for_job(cluster, job_id, timeout_s=180)
    assert status == "SUCCEEDED", logs[-4000:]
    assert (
        s3_server.storage.read_json(join(data, "_manifest.json"))["rows_written"]
        == 3000
    )
    return data


def _s3_env(s3_server) -> dict[str, str]:
    """What a job needs to reach the S3 server (the keys come from the nodes)."""
    return {"IIDS_S3_ENDPOINT": s3_server.endpoint}


def _train_config(data: str, output: str) -> dict:
    """A short CICIoV2024 run: 3 epochs of 20,000 rows, one worker failure tolerated."""
    return {
        "data": data,
        "output": output,
        "run_name": RUN_NAME,
        "dataset": "ciciov2024",
        "task": "specific",
        "epochs": EPOCHS,
        "patience": EPOCHS,  # no early stop: every epoch runs
        "batch_size": 512,
        "min_rows_per_epoch": 20_000,
        "num_workers": 2,
        "cpus_per_worker": 1,
        "max_failures": 1,
        "baseline": False,
        "sampling": {"strategy": "none"},
    }


def _latest_checkpoint(storage, run_uri: str) -> dict | None:
    """The checkpoint Ray Train has registered last (None before the first one)."""
    snapshot = join(run_uri, "checkpoint_manager_snapshot.json")
    if not storage.exists(snapshot):
        return None
    return storage.read_json(snapshot)["latest_checkpoint_result"]


def _train_state(storage, uri: str) -> dict:
    """A checkpoint's train_state.pt, read from S3."""
    import torch

    data = storage.read_bytes(join(uri, "train_state.pt"))
    return torch.load(io.BytesIO(data), weights_only=True)


# -- the tests --------------------------------------------------------------------------------


def test_training_survives_losing_its_worker_node(
    cluster, project, can_data, s3_server
):
    storage = s3_server.storage
    output = s3_server.uri("cluster", "models")
    run_uri = join(output, "_runs", RUN_NAME)
    job_id = _submit(
        cluster,
        project,
        "train",
        _train_config(can_data, output),
        env_vars=_s3_env(s3_server),
    )

    # Wait until Ray Train has registered a checkpoint, then kill the worker node.
    deadline = time.monotonic() + 300
    while _latest_checkpoint(storage, run_uri) is None:
        status = _client(cluster).get_job_status(job_id)
        if status.is_terminal() or time.monotonic() > deadline:
            logs = _client(cluster).get_job_logs(job_id)
            pytest.fail(
                f"no checkpoint registered; job {status.value}:\n{logs[-4000:]}"
            )
        time.sleep(0.5)
    cluster.crash(cluster.nodes[-1])  # the worker node

    # What the run resumes from: the last checkpoint registered before the kill.
    time.sleep(2)  # a report in flight at the kill is registered or lost by now
    latest = _latest_checkpoint(storage, run_uri)
    resumed_epoch = latest["metrics"]["epoch"]
    before_kill = _train_state(storage, join(run_uri, latest["checkpoint_dir_name"]))
    assert before_kill["epoch"] == resumed_epoch
    assert resumed_epoch < EPOCHS, "the kill came after the last epoch: nothing to test"

    # A new machine joins; the job goes on there.
    cluster.start_worker("worker-2")
    status, logs = _wait_for_job(cluster, job_id, timeout_s=240)
    assert status == "SUCCEEDED", logs[-6000:]

    # Every epoch ran once; the epochs before the kill are the checkpoint's, untouched
    # (wall times included: an epoch trained again cannot match them).
    bundle = json.loads(re.search(r"result (\{.*\})", logs).group(1))["model_bundle"]
    report = storage.read_json(join(bundle, "report.json"))
    training = report["training"]
    history = training["history"]
    assert training["epochs_run"] == EPOCHS
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert history[:resumed_epoch] == before_kill["history"]
    assert f"resuming from the checkpoint after epoch {resumed_epoch}" in logs

    # The bundle, its metrics and the run's last checkpoint are on S3.
    assert bundle.startswith(output + "/")
    for name in ("model.json", "config.json", "labels.json", "report.json"):
        assert storage.exists(join(bundle, name)), name
    assert report["rows"]["read"] == 3000 and 0.0 <= report["macro_f1"] <= 1.0
    final = _latest_checkpoint(storage, run_uri)
    assert final["metrics"]["epoch"] == EPOCHS


def test_training_job_with_a_wrong_access_key_names_bucket_and_key(
    cluster, project, can_data, s3_server
):
    config = _train_config(can_data, s3_server.uri("cluster", "wrong-key"))
    env_vars = {**_s3_env(s3_server), "AWS_ACCESS_KEY_ID": "not-a-key"}

    job_id = _submit(cluster, project, "train", config, env_vars=env_vars)
    status, logs = _wait_for_job(cluster, job_id, timeout_s=120)

    assert status == "FAILED"
    manifest_key = (
        can_data.removeprefix(f"s3://{s3_server.bucket}/") + "/_manifest.json"
    )
    assert (
        f"S3 stat failed for bucket {s3_server.bucket!r}, key {manifest_key!r}" in logs
    )
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are valid" in logs
    # Nothing was written under the output.
    assert not s3_server.storage.exists(s3_server.uri("cluster", "wrong-key"))
