"""Latency and throughput of the Ray Serve endpoint against a plain FastAPI server.

Both servers run the same bundle with the same validation and scoring core
(`iids.serving`): the Ray Serve application (one replica, `@serve.batch`) and a plain
single-process FastAPI app on uvicorn that scores each request on its own. For 1, 16 and
64 concurrent clients, sending 1-record and 100-record requests, it measures p50 and p99
latency and requests per second over a fixed number of requests, on loopback only.

    python benchmarks/serve_latency.py                  # a small untrained bundle
    python benchmarks/serve_latency.py --model runs/quickstart/models/<version>
    python benchmarks/serve_latency.py --requests 100   # shorter

The numbers go to benchmarks/results.json under `serve` (other keys are kept), and a
markdown table is printed. Clients, servers and Ray share one machine: on a small one the
client itself takes a good part of the CPU, so compare the two servers as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
FEATURES = ["ID", *(f"DATA_{i}" for i in range(8))]
CONCURRENCY = (1, 16, 64)
RECORDS = (1, 100)


def _rows(n: int, seed: int) -> pa.Table:
    """Typed CICIoV2024-like rows (numbers as float64, the three label columns)."""
    rng = np.random.default_rng(seed)
    classes = np.asarray(["BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL"])
    specific = classes[np.arange(n) % len(classes)]
    columns = {"ID": pa.array(rng.integers(0, 1200, n).astype(np.float64))}
    for i in range(8):
        columns[f"DATA_{i}"] = pa.array(rng.integers(0, 256, n).astype(np.float64))
    columns["label"] = pa.array(np.where(specific == "BENIGN", "BENIGN", "ATTACK"))
    columns["category"] = pa.array(
        np.where(
            specific == "BENIGN",
            "BENIGN",
            np.where(specific == "DoS", "DoS", "SPOOFING"),
        )
    )
    columns["specific_class"] = pa.array(specific)
    return pa.table(columns)


def _make_bundle(root: str) -> str:
    """An untrained bundle of the default model sizes (latency does not need training)."""
    import torch

    from iids.bundle import new_version, save_bundle
    from iids.datasets import get_adapter
    from iids.model import HybridConfig, HybridIDS
    from iids.preprocess import Preprocessor

    adapter = get_adapter("ciciov2024")
    task = adapter.task("specific")
    pre = Preprocessor.fit(_rows(2000, seed=0), adapter)
    torch.manual_seed(0)
    config = HybridConfig()
    model = HybridIDS(pre.num_features, len(task.classes), config).eval()
    return save_bundle(
        root,
        new_version(),
        state_dict=model.state_dict(),
        model_config=config,
        num_features=pre.num_features,
        preprocessor=pre,
        adapter=adapter,
        task=task,
        config={"benchmark": "serve_latency"},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} was not ready after {timeout_s:.0f} s")


async def _load(
    url: str, body: bytes, concurrency: int, num_requests: int, max_s: float
) -> dict:
    """`num_requests` POSTs from `concurrency` clients (or fewer when `max_s` runs out)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        # Warm-up: connections open, first batches compiled.
        await asyncio.gather(
            *(
                http.post("/v1/predict", content=body, headers=headers)
                for _ in range(concurrency)
            )
        )
        deadline = time.perf_counter() + max_s

        async def client() -> None:
            nonlocal sent, errors
            while sent < num_requests and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                response = await http.post("/v1/predict", content=body, headers=headers)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "records_per_s": None,
    }


def _measure(url: str, server: str, num_requests: int, max_s: float) -> list[dict]:
    rows = _rows(100, seed=1).select(FEATURES).to_pylist()
    out = []
    for records in RECORDS:
        body = json.dumps({"records": rows[:records]}).encode()
        for concurrency in CONCURRENCY:
            n = max(num_requests, 2 * concurrency)
            result = asyncio.run(_load(url, body, concurrency, n, max_s))
            result["records_per_s"] = round(result["requests_per_s"] * records, 1)
            out.append(
                {
                    "server": server,
                    "concurrency": concurrency,
                    "records": records,
                    **result,
                }
            )
            print(
                f"  {server:5s} c={concurrency:<3d} records={records:<3d} "
                f"p50={result['p50_ms']:.1f} ms p99={result['p99_ms']:.1f} ms "
                f"{result['requests_per_s']:.0f} req/s",
                file=sys.stderr,
            )
    return out


def _plain_server(model: str, port: int, threads: int) -> None:
    """Run the plain single-process FastAPI app on uvicorn (a subprocess of the benchmark)."""
    import uvicorn

    from iids.serving import create_plain_app

    settings = {"model_uri": model, "threads": threads}
    uvicorn.run(
        create_plain_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


def _table(results: list[dict]) -> str:
    by_key = {(r["server"], r["concurrency"], r["records"]): r for r in results}
    lines = [
        "| records/request | clients | serve p50 ms | serve p99 ms | serve req/s "
        "| plain p50 ms | plain p99 ms | plain req/s | serve/plain req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for records in RECORDS:
        for concurrency in CONCURRENCY:
            s = by_key[("serve", concurrency, records)]
            p = by_key[("plain", concurrency, records)]
            ratio = (
                s["requests_per_s"] / p["requests_per_s"] if p["requests_per_s"] else 0
            )
            lines.append(
                f"| {records} | {concurrency} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
                f"| {s['requests_per_s']:.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} "
                f"| {p['requests_per_s']:.0f} | {ratio:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a model bundle (default: a small untrained one)"
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per cell")
    parser.add_argument("--max-s", type=float, default=20.0, help="time cap per cell")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.005)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per server"
    )
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        _plain_server(args.model, args.port, args.threads)
        return

    import ray
    from ray import serve

    from iids.serving import build_app

    ray.init(
        num_cpus=args.num_cpus,
        object_store_memory=1 << 30,
        include_dashboard=False,
        log_to_driver=False,
    )
    tmp = tempfile.TemporaryDirectory(prefix="iids-bench-")
    plain = None
    try:
        model = (
            str(Path(args.model).resolve()) if args.model else _make_bundle(tmp.name)
        )
        settings = {
            "model_uri": model,
            "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_timeout_s,
            "threads": args.threads,
        }
        results: list[dict] = []

        # Ray Serve: one replica, batching on.
        serve_port = _free_port()
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.start(
            http_options={"host": "127.0.0.1", "port": serve_port}, logging_config=quiet
        )
        application = build_app(settings, max_replicas=1, num_cpus=1)
        serve.run(application, name="iids-bench", logging_config=quiet)
        _wait_ready(f"http://127.0.0.1:{serve_port}")
        print("Ray Serve:", file=sys.stderr)
        results += _measure(
            f"http://127.0.0.1:{serve_port}", "serve", args.requests, args.max_s
        )
        serve.shutdown()

        # The plain server: one uvicorn process, no batching.
        plain_port = _free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        plain = subprocess.Popen(
            [sys.executable, __file__, "--plain-server", "--model", model,
             "--port", str(plain_port), "--threads", str(args.threads)],
            env=env,
        )  # fmt: skip
        _wait_ready(f"http://127.0.0.1:{plain_port}")
        print("plain FastAPI on uvicorn:", file=sys.stderr)
        results += _measure(
            f"http://127.0.0.1:{plain_port}", "plain", args.requests, args.max_s
        )
    finally:
        if plain is not None:
            plain.terminate()
            plain.wait(timeout=30)
        ray.shutdown()
        tmp.cleanup()

    # Merge into results.json under `serve`.
    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": args.model or "untrained bundle, default HybridConfig",
        "settings": {
            "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_timeout_s,
            "torch_threads_per_server": args.threads,
            "ray_num_cpus": args.num_cpus,
            "serve_replicas": 1,
            "requests_per_cell": args.requests,
            "max_s_per_cell": args.max_s,
        },
        "results": results,
    }
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing["serve"] = record
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(_table(results))


if __name__ == "__main__":
    main()
