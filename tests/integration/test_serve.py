"""The HTTP scoring endpoint on Ray Serve, over real HTTP on 127.0.0.1.

The application is deployed from `serve/config.yaml` (as `serve deploy` would) with a small
untrained bundle, and checked for what an application calling it relies on: the same
predictions as batch scoring, batching under concurrent load, a 4xx naming the field for
each kind of bad input, bearer-token authentication, and a model update without errors.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from iids.batch import score_dataset
from iids.bundle import new_version, save_bundle
from iids.datasets import get_adapter
from iids.model import HybridConfig, HybridIDS
from iids.preprocess import Preprocessor
from iids.scoring import Scorer
from iids.serving import (
    BATCH_SIZE_HEADER,
    RequestError,
    ScoreJob,
    _Model,
    score_jobs,
)
from tests.builders import can_rows

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_RECORDS = 200
MAX_BODY_BYTES = 64 * 1024
FEATURES = ["ID", *(f"DATA_{i}" for i in range(8))]


def _make_bundle(root: Path, seed: int) -> str:
    """An untrained CICIoV2024 bundle: preprocessing fitted on seeded rows."""
    adapter = get_adapter("ciciov2024")
    task = adapter.task("specific")
    pre = Preprocessor.fit(can_rows(600, seed=seed), adapter)
    torch.manual_seed(seed)
    config = HybridConfig(channels=8, gru_hidden=8, num_heads=2)
    model = HybridIDS(pre.num_features, len(task.classes), config).eval()
    return save_bundle(
        str(root),
        new_version(),
        state_dict=model.state_dict(),
        model_config=config,
        num_features=pre.num_features,
        preprocessor=pre,
        adapter=adapter,
        task=task,
        config={"seed": seed},
    )


def _records(rows: pa.Table, as_text_every: int = 3) -> list[dict]:
    """Rows as request records; every `as_text_every`-th number is sent as text."""
    records = []
    for i, row in enumerate(rows.select(FEATURES).to_pylist()):
        if i % as_text_every == 0:
            row = {k: f"{v:g}" for k, v in row.items()}
        records.append(row)
    return records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deploy(user_config: dict) -> None:
    """Deploy serve/config.yaml with test overrides, as `serve deploy` does."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    for key in ("http_options", "proxy_location"):
        config.pop(key, None)  # cluster settings; this test's Serve is already up
    app = config["applications"][0]
    app.pop("runtime_env", None)  # runs in this process's environment
    deployment = app["deployments"][0]
    deployment["autoscaling_config"].update(min_replicas=1, max_replicas=1)
    deployment["ray_actor_options"] = {"num_cpus": 0}  # leave CPUs to Ray Data
    deployment["user_config"] = {**deployment["user_config"], **user_config}
    _get_global_client().deploy_apps(ServeDeploySchema(**config), _blocking=True)


@pytest.fixture(scope="module")
def bundles(ray_session, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("models")
    return _make_bundle(root, seed=0), _make_bundle(root, seed=1)


@pytest.fixture(scope="module")
def server(ray_session, bundles, tmp_path_factory):
    """The Serve application on 127.0.0.1, with a bearer token from a secret file."""
    from ray import serve

    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    user_config = {
        "model_uri": bundles[0],
        "token_file": str(token_file),
        "batch_wait_timeout_s": 0.05,  # generous, so batches form on a busy machine
        "max_records": MAX_RECORDS,
        "max_body_bytes": MAX_BODY_BYTES,
    }
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        _deploy(user_config)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield {"client": client, "port": port, "user_config": user_config}
    finally:
        serve.shutdown()


@pytest.fixture()
def client(server) -> httpx.Client:
    return server["client"]


# -- model, health, predictions ---------------------------------------------------------


def test_health_readiness_and_model_info(client, bundles):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True

    info = client.get("/v1/model", headers=AUTH).json()
    assert "model_version" in info, info
    scorer = Scorer.from_uri(bundles[0])
    assert info["model_version"] == scorer.version
    assert info["classes"] == ["BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL"]
    assert [f["name"] for f in info["features"]] == FEATURES
    assert all(f["type"] == "number" and f["base"] == 10 for f in info["features"])
    assert info["limits"]["max_records"] == MAX_RECORDS


def test_predictions_equal_batch_scoring(client, bundles, tmp_path):
    rows = can_rows(60, seed=7)
    response = client.post(
        "/v1/predict",
        json={"records": _records(rows)},
        params={"scores": "true"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    served_class = [p["class"] for p in body["predictions"]]
    served_proba = np.array([p["probability"] for p in body["predictions"]])
    served_scores = np.array([list(p["scores"].values()) for p in body["predictions"]])

    # The scoring core on the same rows, in this process.
    scorer = Scorer.from_uri(bundles[0])
    codes, proba = scorer.score(rows)
    assert body["model_version"] == scorer.version
    assert served_class == [scorer.classes[c] for c in codes]
    np.testing.assert_allclose(served_proba, proba[np.arange(60), codes], rtol=1e-6)
    np.testing.assert_allclose(served_scores, proba, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(served_scores.sum(axis=1), 1.0, rtol=1e-5)

    # The nightly batch path (Ray Data) on the same rows stored as Parquet.
    data = tmp_path / "data"
    data.mkdir()
    keyed = rows.append_column("row_key", pa.array([f"r{i:03d}" for i in range(60)]))
    pq.write_table(keyed, data / "part-0.parquet")
    score_dataset(bundles[0], str(data), str(tmp_path / "out"), num_actors=1)
    out = pq.read_table(tmp_path / "out").sort_by("row_key")
    assert out["predicted_class"].to_pylist() == served_class
    np.testing.assert_allclose(out["probability"].to_numpy(), served_proba, rtol=1e-6)


def test_scores_only_on_request(client):
    record = dict.fromkeys(FEATURES, 0)
    plain = client.post("/v1/predict", json={"records": [record]}, headers=AUTH)
    assert set(plain.json()["predictions"][0]) == {"class", "probability"}
    flagged = client.post(
        "/v1/predict", json={"records": [record], "scores": True}, headers=AUTH
    )
    scores = flagged.json()["predictions"][0]["scores"]
    assert list(scores) == ["BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL"]


def test_concurrent_requests_are_batched(server):
    rows = can_rows(32, seed=11)
    records = _records(rows)
    expected_codes, _ = Scorer.from_uri(server["user_config"]["model_uri"]).score(rows)

    async def burst() -> list[httpx.Response]:
        url = f"http://127.0.0.1:{server['port']}"
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as http:
            return await asyncio.gather(
                *(
                    http.post("/v1/predict", json={"records": [records[i]]})
                    for i in range(32)
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 32
    sizes = [int(r.headers[BATCH_SIZE_HEADER]) for r in responses]
    assert max(sizes) > 1, f"no batching observed: batch sizes {sizes}"
    classes = ["BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL"]
    served = [r.json()["predictions"][0]["class"] for r in responses]
    assert served == [classes[c] for c in expected_codes]


# -- bad input --------------------------------------------------------------------------


def _good() -> dict:
    return dict.fromkeys(FEATURES, 1)


BAD_INPUTS = [
    # (name, body bytes, status, kind, field, words in the message)
    ("malformed", b'{"records": [', 400, "malformed_json", "body", "valid JSON"),
    ("not-object", b"[1, 2]", 422, "invalid_body", "body", "object"),
    ("no-records", b'{"rows": []}', 422, "invalid_body", "records", "required"),
    ("empty", b'{"records": []}', 422, "invalid_body", "records", "at least 1"),
    (
        "missing",
        json.dumps({"records": [_good(), {k: 1 for k in FEATURES[:-1]}]}).encode(),
        422,
        "missing_feature",
        "records[1].DATA_7",
        "finite number",
    ),
    (
        "unknown",
        json.dumps({"records": [{**_good(), "DATA_9": 3}]}).encode(),
        422,
        "unknown_feature",
        "records[0].DATA_9",
        "unknown column 'DATA_9'",
    ),
    (
        "wrong-type-bool",
        json.dumps({"records": [{**_good(), "DATA_3": True}]}).encode(),
        422,
        "wrong_type",
        "records[0].DATA_3",
        "found boolean true",
    ),
    (
        "wrong-type-text",
        json.dumps({"records": [{**_good(), "ID": "0x1g"}]}).encode(),
        422,
        "wrong_type",
        "records[0].ID",
        "'0x1g'",
    ),
    (
        "wrong-type-list",
        json.dumps({"records": [{**_good(), "DATA_0": [1]}]}).encode(),
        422,
        "wrong_type",
        "records[0].DATA_0",
        "array",
    ),
    (
        "nan-literal",
        b'{"records": [{"ID": NaN, "DATA_0": 1, "DATA_1": 1, "DATA_2": 1, "DATA_3": 1,'
        b' "DATA_4": 1, "DATA_5": 1, "DATA_6": 1, "DATA_7": 1}]}',
        422,
        "non_finite",
        "records[0].ID",
        "found NaN",
    ),
    (
        "inf-text",
        json.dumps({"records": [{**_good(), "DATA_5": "inf"}]}).encode(),
        422,
        "non_finite",
        "records[0].DATA_5",
        "finite number",
    ),
    (
        "too-many-records",
        json.dumps({"records": [_good()] * (MAX_RECORDS + 1)}).encode(),
        413,
        "too_many_records",
        "records",
        f"at most {MAX_RECORDS}",
    ),
    (
        "body-too-large",
        json.dumps({"records": [_good()], "pad": "x" * MAX_BODY_BYTES}).encode(),
        413,
        "body_too_large",
        "body",
        "at most",
    ),
    (
        "scores-not-bool",
        json.dumps({"records": [_good()], "scores": "yes"}).encode(),
        422,
        "invalid_body",
        "scores",
        "boolean",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "kind", "where", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    client, body, status, kind, where, words
):
    response = client.post(
        "/v1/predict",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["kind"] == kind
    assert error["errors"][0]["field"] == where
    assert words in error["message"]
    assert "Traceback" not in response.text


def test_bad_query_flag_is_a_422(client):
    response = client.post(
        "/v1/predict",
        json={"records": [_good()]},
        params={"scores": "perhaps"},
        headers=AUTH,
    )
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "query.scores"


def test_every_problem_is_listed(client):
    records = [{**_good(), "DATA_1": "x"}, {**_good(), "DATA_2": None}]
    response = client.post("/v1/predict", json={"records": records}, headers=AUTH)
    error = response.json()["error"]
    assert error["error_count"] == 2
    assert [e["field"] for e in error["errors"]] == [
        "records[0].DATA_1",
        "records[1].DATA_2",
    ]


def test_bad_requests_do_not_fail_their_batch(server):
    rows = can_rows(16, seed=5)
    records = _records(rows)

    async def mixed() -> list[httpx.Response]:
        url = f"http://127.0.0.1:{server['port']}"
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as http:
            good = [http.post("/v1/predict", json={"records": [r]}) for r in records]
            bad = [
                http.post("/v1/predict", json={"records": [{"ID": "nope"}]})
                for _ in range(8)
            ]
            return await asyncio.gather(*good, *bad)

    responses = asyncio.run(mixed())
    assert [r.status_code for r in responses] == [200] * 16 + [422] * 8


def test_batched_scoring_isolates_a_failing_request(bundles):
    """A request that breaks the model call fails alone; the others are answered."""
    model = _Model.load(bundles[0], None, threads=1)
    good = can_rows(4, seed=1).select(FEATURES)
    broken = good.drop_columns(["DATA_7"])  # cannot be scored
    jobs = [ScoreJob(model, good), ScoreJob(model, broken), ScoreJob(model, good)]
    outcomes = score_jobs(jobs)
    assert outcomes[0].error is None and outcomes[2].error is None
    assert len(outcomes[0].body["predictions"]) == 4
    assert isinstance(outcomes[1].error, RequestError)
    assert outcomes[1].error.status == 422
    assert "DATA_7" in outcomes[1].error.message


# -- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        (AUTH, 200),
    ],
    ids=["no-header", "wrong-token", "wrong-scheme", "right-token"],
)
def test_bearer_token(client, headers, status):
    response = client.post("/v1/predict", json={"records": [_good()]}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["kind"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/v1/model", headers=headers).status_code == 401


# -- model update -----------------------------------------------------------------------


def test_model_update_without_downtime(server, bundles):
    """A new bundle through user_config: every request during the update succeeds."""
    client = server["client"]
    old = Scorer.from_uri(bundles[0]).version
    new = Scorer.from_uri(bundles[1]).version
    record = {"records": [dict.fromkeys(FEATURES, 3)]}
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()
    replica = client.get("/v1/model", headers=AUTH).json()["replica"]

    def traffic() -> None:
        url = f"http://127.0.0.1:{server['port']}"
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            while not stop.is_set():
                response = http.post("/v1/predict", json=record)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.add(response.json()["model_version"])

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        updated = copy.deepcopy(server["user_config"])
        updated["model_uri"] = bundles[1]
        _deploy(updated)
        for _ in range(100):
            info = client.get("/v1/model", headers=AUTH).json()
            if info["model_version"] == new:
                break
            threading.Event().wait(0.1)
        threading.Event().wait(0.5)  # some traffic on the new version
    finally:
        stop.set()
        for t in threads:
            t.join()
        _deploy(server["user_config"])  # back to the first bundle for other tests

    assert info["model_version"] == new
    assert info["replica"] == replica  # reconfigured in place, not replaced
    assert statuses and set(statuses) == {200}
    assert versions == {old, new}


# -- the same endpoint without Ray, and token settings ----------------------------------


def test_plain_app_is_open_without_a_token(bundles, monkeypatch):
    """No token configured: no authentication; same answers as the scoring core."""
    from iids.serving import create_plain_app

    monkeypatch.delenv("IIDS_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("IIDS_SERVE_TOKEN_FILE", raising=False)
    rows = can_rows(12, seed=2)
    app = create_plain_app({"model_uri": bundles[0]})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.post("/v1/predict", json={"records": _records(rows)})

    response = asyncio.run(call())
    assert response.status_code == 200
    scorer = Scorer.from_uri(bundles[0])
    codes, _ = scorer.score(rows)
    served = [p["class"] for p in response.json()["predictions"]]
    assert served == [scorer.classes[c] for c in codes]


def test_token_from_environment(monkeypatch, tmp_path):
    from iids.config import serve_token

    monkeypatch.delenv("IIDS_SERVE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("IIDS_SERVE_TOKEN", "from-env")
    assert serve_token() == "from-env"

    monkeypatch.delenv("IIDS_SERVE_TOKEN")
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("IIDS_SERVE_TOKEN_FILE", str(secret))
    assert serve_token() == "from-file"

    secret.write_text("  \n")
    with pytest.raises(ValueError, match="expected a token, found an empty file"):
        serve_token()


def test_custom_metrics_reach_prometheus(server):
    import ray

    client = server["client"]
    assert (
        client.post(
            "/v1/predict", headers=AUTH, json={"records": _records(can_rows(3))}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/v1/predict", headers=AUTH, json={"records": [{"ID": "x"}]}
        ).status_code
        == 422
    )
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if "iids_predictions" in text and "iids_bad_requests" in text:
            break
        time.sleep(2)
    predictions = [
        ln for ln in text.splitlines() if ln.startswith("ray_iids_predictions")
    ]
    bad = [ln for ln in text.splitlines() if ln.startswith("ray_iids_bad_requests")]
    assert predictions and any('class="' in ln for ln in predictions), text[-2000:]
    assert bad and any('kind="' in ln for ln in bad)
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in predictions) >= 3
