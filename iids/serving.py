"""Online scoring over HTTP: request validation, batched scoring on Ray Serve, auth.

A request carries records in the dataset's raw schema (`{"records": [{column: value}]}`).
Each request is checked on its own against the bundle's feature schema before it joins a
batch, so a bad request is answered with a 4xx naming the field and never reaches the
model. `@serve.batch` then gathers concurrent requests and scores their rows in one call of
`iids.scoring.Scorer`, the core that batch scoring uses too, so the endpoint and the nightly
job always agree on the same rows. A failure inside a batch is isolated: the batch is
scored again request by request and only the failing request gets the error.

A new bundle version arrives through the deployment's `user_config` (`reconfigure`): the
replica loads it beside the old one and swaps; a request keeps the model it was validated
against until it is answered, so requests in flight complete.

Routes: `POST /v1/predict`, `GET /v1/model`, `GET /healthz` (liveness), `GET /readyz`
(the model is loaded). With a bearer token configured, `/v1/*` needs
`Authorization: Bearer <token>`.
"""

# No `from __future__ import annotations` here: the routes are rebuilt by Serve's ingress,
# and FastAPI must find `Request` as a class, not as a string it cannot resolve.

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from ray import serve

from iids._errors import validation_problems
from iids.datasets import parse_numbers
from iids.preprocess import FeatureError
from iids.scoring import Scorer
from iids.storage import Storage

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
BATCH_SIZE_HEADER = "X-IIDS-Batch-Size"
MODEL_VERSION_HEADER = "X-IIDS-Model-Version"
DEPLOYMENT_NAME = "Detector"
MAX_ERRORS = 20  # per response; the count of all errors is always given

__all__ = [
    "DEPLOYMENT_NAME",
    "Detector",
    "OnlineScorer",
    "PredictRequest",
    "PredictResponse",
    "RequestError",
    "ScoreJob",
    "ServeSettings",
    "app_builder",
    "build_app",
    "create_plain_app",
    "parse_settings",
    "score_jobs",
]


# -- settings and HTTP models -----------------------------------------------------------


class ServeSettings(BaseModel):
    """Settings of the scoring endpoint; the deployment's `user_config`.

    All of them can change while serving (`serve deploy` with a new `user_config`):
    a new `model_uri` loads the new bundle and swaps it in without a restart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str = Field(..., min_length=1, description="the model bundle to serve")
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="requests gathered into one model call"
    )
    batch_wait_timeout_s: float = Field(
        0.005, ge=0.0, le=1.0, description="longest wait for a batch to fill"
    )
    max_records: int = Field(1000, ge=1, description="records in one request")
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="request body size; larger bodies get 413"
    )
    token_file: str | None = Field(
        None,
        description="file holding the bearer token; default: IIDS_SERVE_TOKEN or "
        "IIDS_SERVE_TOKEN_FILE; no token means no authentication",
    )
    threads: int = Field(1, ge=1, description="torch threads per replica")


def parse_settings(data: dict[str, Any] | ServeSettings) -> ServeSettings:
    """Validate endpoint settings (a `user_config` mapping).

    Raises:
        ValueError: an unknown key or a value out of range; the message names the key.
    """
    if isinstance(data, ServeSettings):
        return data
    if not isinstance(data, dict):
        raise ValueError(
            f"serve settings: expected a mapping, found {type(data).__name__}"
        )
    try:
        return ServeSettings(**data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ValueError(f"serve settings (user_config): {problems}") from None


class PredictRequest(BaseModel):
    """The body of `POST /v1/predict`.

    Each record maps the dataset's raw column names to values: numeric columns take a
    JSON number or text written in the column's base (`"0x1f"`, `"01101"`), categorical
    columns take text or a number. Raw columns that are not features (labels,
    identifiers) are accepted and ignored; names outside the raw schema are refused.
    """

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(..., min_length=1)
    scores: StrictBool = Field(False, description="also return every class's score")


class Prediction(BaseModel):
    """One record's prediction."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(..., alias="class", description="the predicted class")
    probability: float = Field(..., description="the predicted class's probability")
    scores: dict[str, float] | None = Field(
        None, description="every class's probability, when asked for"
    )


class PredictResponse(BaseModel):
    """The answer of `POST /v1/predict`: one prediction per record, in order."""

    model_version: str
    predictions: list[Prediction]


class ErrorItem(BaseModel):
    """One problem of a bad request."""

    kind: str
    field: str
    expected: str
    found: str


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer (`{"error": ErrorBody}`)."""

    kind: str
    message: str
    errors: list[ErrorItem] = Field(default_factory=list)
    error_count: int = 0


class ErrorResponse(BaseModel):
    """What every refused request gets back."""

    error: ErrorBody


class RequestError(Exception):
    """A request the endpoint refuses, with its HTTP status and what is wrong.

    Args:
        status: the HTTP status (4xx; 500 only for the endpoint's own failures).
        kind: a short machine-readable name (`wrong_type`, `missing_feature`, ...).
        message: one sentence for people: the field, what was expected, what was found.
        errors: every problem found, as `ErrorItem` dicts.
    """

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        errors: list[dict[str, str]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.errors = errors or []

    @classmethod
    def from_items(cls, status: int, items: list[dict[str, str]]) -> "RequestError":
        """One error from many problems; the first one gives the kind and message."""
        first = items[0]
        message = (
            f"{first['field']}: expected {first['expected']}, found {first['found']}"
        )
        if len(items) > 1:
            message += f" (and {len(items) - 1} more problem(s))"
        return cls(status, first["kind"], message, items)

    def response(self) -> JSONResponse:
        body = {
            "kind": self.kind,
            "message": self.message,
            "errors": self.errors[:MAX_ERRORS],
            "error_count": len(self.errors),
        }
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


def _item(kind: str, where: str, expected: str, found: str) -> dict[str, str]:
    return {"kind": kind, "field": where, "expected": expected, "found": found}


def _describe(value: Any) -> str:
    """A JSON value as a person reads it in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"text {text!r}"
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, int | float):
        text = repr(value)
        return f"number {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    return type(value).__name__


# -- the feature schema of a bundle -----------------------------------------------------


_BASE_NAMES = {10: "decimal", 16: "hexadecimal", 2: "binary"}


@dataclass(frozen=True)
class _Schema:
    """What a record must hold for a bundle: its input columns and how they parse."""

    numeric: dict[str, int]  # column -> base of its text form
    categorical: tuple[str, ...]
    ignored: frozenset[str]  # raw columns that are never features: accepted, unused

    @classmethod
    def of(cls, scorer: Scorer) -> "_Schema":
        pre = scorer.bundle.preprocessor
        features = set(pre.input_columns)
        raw = scorer.bundle.adapter.column_names
        return cls(
            numeric=dict(zip(pre.numeric, pre.bases, strict=True)),
            categorical=tuple(pre.categories),
            ignored=frozenset(c for c in raw if c not in features),
        )

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def expected(self, col: str) -> str:
        if col in self.numeric:
            base = self.numeric[col]
            return f"a finite number (a JSON number or {_BASE_NAMES[base]} text)"
        return "a category (text or a number)"


@dataclass(frozen=True)
class _Model:
    """A loaded bundle with the request schema derived from it."""

    uri: str
    scorer: Scorer
    schema: _Schema

    @classmethod
    def load(cls, uri: str, storage: Storage | None, threads: int) -> "_Model":
        scorer = Scorer.from_uri(uri, storage, threads=threads)
        return cls(uri, scorer, _Schema.of(scorer))

    def info(self) -> dict[str, Any]:
        """Version, classes and feature schema, as `GET /v1/model` returns them."""
        bundle = self.scorer.bundle
        features = []
        for col, base in self.schema.numeric.items():
            features.append({"name": col, "type": "number", "base": base})
        for col in self.schema.categorical:
            vocab = bundle.preprocessor.categories[col]
            features.append({"name": col, "type": "category", "categories": vocab})
        return {
            "model_version": self.scorer.version,
            "model_uri": self.uri,
            "dataset": bundle.adapter.name,
            "task": bundle.task.name,
            "classes": self.scorer.classes,
            "features": features,
            "ignored_columns": sorted(self.schema.ignored),
        }


def _records_to_table(records: list[dict[str, Any]], schema: _Schema) -> pa.Table:
    """Validated records to typed rows: numbers as float64, categories as text.

    Every problem of every record is collected, so one answer lists them all.

    Raises:
        RequestError: 422, naming each bad field as `records[i].COLUMN`.
    """
    n = len(records)
    known = set(schema.columns) | schema.ignored
    order = {c: k for k, c in enumerate(schema.columns)}
    problems: list[tuple[int, int, dict[str, str]]] = []  # (row, column order, item)
    numbers = {c: np.zeros(n, dtype=np.float64) for c in schema.numeric}
    texts: dict[str, list[tuple[int, str]]] = {c: [] for c in schema.numeric}
    categories: dict[str, list[str]] = {c: [""] * n for c in schema.categorical}

    def report(i: int, col: str, kind: str, expected: str, found: str) -> None:
        where = f"records[{i}].{col}"
        problems.append(
            (i, order.get(col, len(order)), _item(kind, where, expected, found))
        )

    # Per record: names, presence and JSON types.
    for i, record in enumerate(records):
        for key in sorted(record.keys() - known):
            expected = f"only the dataset's raw columns (features: {schema.columns})"
            report(i, key, "unknown_feature", expected, f"unknown column {key!r}")
        for col in schema.columns:
            if col not in record:
                report(i, col, "missing_feature", schema.expected(col), "none")
                continue
            value = record[col]
            if col in numbers and isinstance(value, str):
                texts[col].append((i, value))  # parsed below, per column
            elif col in numbers:
                number = _json_number(value)
                if number is None:
                    report(i, col, "wrong_type", schema.expected(col), _describe(value))
                elif not math.isfinite(number):
                    report(i, col, "non_finite", "a finite number", _describe(value))
                else:
                    numbers[col][i] = number
            else:
                text = _category_text(value)
                if text is None:
                    report(i, col, "wrong_type", schema.expected(col), _describe(value))
                else:
                    categories[col][i] = text

    # Numbers written as text: parsed per column in the column's base, as ingest does.
    for col, cells in texts.items():
        if not cells:
            continue
        cells_text = pa.array([text for _, text in cells], pa.string())
        parsed, bad = parse_numbers(cells_text, base=schema.numeric[col])
        for k, (i, text) in enumerate(cells):
            if bad[k]:
                report(i, col, "wrong_type", schema.expected(col), _describe(text))
            elif not math.isfinite(parsed[k]):
                report(i, col, "non_finite", "a finite number", _describe(text))
            else:
                numbers[col][i] = parsed[k]

    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        raise RequestError.from_items(422, [item for _, _, item in problems])
    columns: dict[str, pa.Array] = {c: pa.array(v) for c, v in numbers.items()}
    columns.update({c: pa.array(v, pa.string()) for c, v in categories.items()})
    return pa.table(columns)


def _json_number(value: Any) -> float | None:
    """A JSON number as float (infinite when too large); None for other JSON types."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _category_text(value: Any) -> str | None:
    """A categorical cell as text (numbers in their shortest form); None if invalid."""
    if isinstance(value, str):
        return value
    number = _json_number(value)
    if number is None or not math.isfinite(number):
        return None
    return str(value) if isinstance(value, int) else repr(value)


# -- scoring many requests at once ------------------------------------------------------


@dataclass
class ScoreJob:
    """One validated request on its way to the model.

    Attributes:
        model: the model the rows were validated against (it scores them, even when a
            new version was swapped in meanwhile).
        rows: typed rows, one per record.
        want_scores: whether the answer carries every class's score.
    """

    model: _Model
    rows: pa.Table
    want_scores: bool = False


@dataclass
class ScoreOutcome:
    """The answer to one `ScoreJob`: a response body, or the error of that request only.

    Attributes:
        body: the `PredictResponse` body, when scoring succeeded.
        error: why this request failed, when it did.
        codes: predicted class codes, shape (N,), when scoring succeeded.
        batch_requests: requests scored in the same model call as this one.
        batch_rows: rows in that model call.
    """

    body: dict[str, Any] | None = None
    error: RequestError | None = None
    codes: np.ndarray | None = field(default=None, repr=False)
    batch_requests: int = 1
    batch_rows: int = 0


def score_jobs(jobs: list[ScoreJob]) -> list[ScoreOutcome]:
    """Score many requests with one model call per model version; isolate failures.

    Jobs validated against the same model are concatenated and scored together. If that
    call fails, the group is scored again one request at a time, so a request that
    breaks the model fails alone and the others still get their answers.

    Args:
        jobs: validated requests, in arrival order.

    Returns:
        One outcome per job, in the same order.
    """
    outcomes: list[ScoreOutcome] = [ScoreOutcome() for _ in jobs]
    groups: dict[int, list[int]] = {}
    for k, job in enumerate(jobs):
        groups.setdefault(id(job.model), []).append(k)

    for members in groups.values():
        model = jobs[members[0]].model
        rows = sum(jobs[k].rows.num_rows for k in members)
        try:
            table = pa.concat_tables([jobs[k].rows for k in members])
            codes, proba = model.scorer.score(table)
        except Exception:
            logger.warning(
                "a batch of %d request(s) failed; scoring them one by one",
                len(members),
                exc_info=True,
            )
            for k in members:
                outcomes[k] = _score_alone(jobs[k])
            continue
        start = 0
        for k in members:
            n = jobs[k].rows.num_rows
            stop = start + n
            outcomes[k] = ScoreOutcome(
                body=_render(model, codes[start:stop], proba[start:stop], jobs[k]),
                codes=codes[start:stop],
                batch_requests=len(members),
                batch_rows=rows,
            )
            start = stop
    return outcomes


def _score_alone(job: ScoreJob) -> ScoreOutcome:
    """One request scored by itself; its failure becomes its own error answer."""
    try:
        codes, proba = job.model.scorer.score(job.rows)
    except FeatureError as exc:
        error = RequestError(422, "invalid_features", str(exc))
        return ScoreOutcome(error=error, batch_rows=job.rows.num_rows)
    except Exception:
        logger.exception("scoring one request failed")
        error = RequestError(
            500, "internal", "scoring failed on the server; its log has the details"
        )
        return ScoreOutcome(error=error, batch_rows=job.rows.num_rows)
    body = _render(job.model, codes, proba, job)
    return ScoreOutcome(body=body, codes=codes, batch_rows=job.rows.num_rows)


def _render(
    model: _Model, codes: np.ndarray, proba: np.ndarray, job: ScoreJob
) -> dict[str, Any]:
    """A `PredictResponse` body from codes (N,) and float32 probabilities (N, C)."""
    classes = model.scorer.classes
    top = proba[np.arange(len(codes)), codes].tolist()
    predictions: list[dict[str, Any]] = [
        {"class": classes[c], "probability": p}
        for c, p in zip(codes.tolist(), top, strict=True)
    ]
    if job.want_scores:
        for item, row in zip(predictions, proba.tolist(), strict=True):
            item["scores"] = dict(zip(classes, row, strict=True))
    return {"model_version": model.scorer.version, "predictions": predictions}


# -- the HTTP-independent endpoint ------------------------------------------------------


class _Metrics:
    """Custom Prometheus metrics of a replica (exported by Ray beside Serve's own)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._predictions = metrics.Counter(
            "iids_predictions",
            description="Records scored, per predicted class and model version.",
            tag_keys=("class", "model_version"),
        )
        self._bad_requests = metrics.Counter(
            "iids_bad_requests",
            description="Requests refused, per kind of problem.",
            tag_keys=("kind",),
        )
        self._batch_requests = metrics.Histogram(
            "iids_batch_requests",
            description="Requests scored in one model call.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256],
        )

    def predictions(self, classes: list[str], codes: np.ndarray, version: str) -> None:
        counts = np.bincount(codes, minlength=len(classes))
        for name, count in zip(classes, counts.tolist(), strict=True):
            if count:
                tags = {"class": name, "model_version": version}
                self._predictions.inc(count, tags=tags)

    def bad_request(self, kind: str) -> None:
        self._bad_requests.inc(tags={"kind": kind})

    def batch(self, num_requests: int) -> None:
        self._batch_requests.observe(num_requests)


def _resolve_token(token_file: str | None) -> str | None:
    """The bearer token: from `token_file` when set, else from the environment."""
    from iids.config import read_token_file, serve_token

    if token_file:
        return read_token_file(token_file)
    return serve_token()


class OnlineScorer:
    """Everything of online scoring but HTTP transport and batching.

    Checks the bearer token, bounds and parses the body, validates records against the
    model's feature schema, and renders answers and errors. The Ray Serve deployment
    and the plain FastAPI app both delegate to it.

    Args:
        settings: the endpoint settings.
        storage: where bundles live (None: local files).
        metrics: a replica's Prometheus metrics (None: not recorded).
    """

    def __init__(
        self,
        settings: ServeSettings | dict[str, Any],
        *,
        storage: Storage | None = None,
        metrics: _Metrics | None = None,
    ):
        self._storage = storage
        self._metrics = metrics
        self.model: _Model | None = None
        self.settings: ServeSettings | None = None
        self._token: str | None = None
        self.update(settings)

    def update(self, settings: ServeSettings | dict[str, Any]) -> None:
        """Apply new settings; load and swap in the bundle when `model_uri` changed.

        The new bundle loads while the old one keeps serving; requests already
        validated keep the old one until they are answered.

        Raises:
            ValueError: invalid settings, or an unreadable token file.
            FileNotFoundError: `model_uri` is not a bundle.
        """
        settings = parse_settings(settings)
        token = _resolve_token(settings.token_file)
        model = self.model
        if model is None or model.uri != settings.model_uri:
            started = time.perf_counter()
            model = _Model.load(settings.model_uri, self._storage, settings.threads)
            logger.info(
                "model %s loaded from %s in %.2f s",
                model.scorer.version,
                model.uri,
                time.perf_counter() - started,
            )
        self.model, self.settings, self._token = model, settings, token

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def authorize(self, authorization: str | None) -> None:
        """Check `Authorization: Bearer <token>` in constant time (no-op without token).

        Raises:
            RequestError: 401 when the header is absent or the token differs.
        """
        if self._token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token.encode()
        )
        if not ok:
            found = "no Authorization header" if not authorization else "another token"
            if authorization and scheme.lower() != "bearer":
                found = f"scheme {scheme!r}"
            raise RequestError.from_items(
                401,
                [
                    _item(
                        "unauthorized",
                        "header Authorization",
                        "'Bearer <token>' with the configured token",
                        found,
                    )
                ],
            )

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 beyond `max_body_bytes`."""
        # TODO(iids): on Ray Serve the proxy has received the whole body before the
        # replica sees it; bound body size in front of the proxy (ingress, load
        # balancer) too, so a hostile client cannot make the proxy buffer gigabytes.
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(f"a declared {int(declared):,} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self._too_large(f"more than {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, found: str) -> "RequestError":
        limit = self.settings.max_body_bytes
        expected = f"at most {limit:,} bytes (split the records over several requests)"
        return RequestError.from_items(
            413, [_item("body_too_large", "body", expected, found)]
        )

    def parse(self, body: bytes, scores: bool | None = None) -> ScoreJob:
        """A request body to a validated job for the current model.

        Args:
            body: the raw JSON body.
            scores: the `?scores=` query flag; overrides the body's `scores` when set.

        Raises:
            RequestError: 400 for malformed JSON, 413 for too many records, 422 for a
                body or record that does not fit the schema.
        """
        model = self.model
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            found = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
            raise RequestError.from_items(
                400, [_item("malformed_json", "body", "valid JSON", found)]
            ) from None
        except (ValueError, RecursionError) as exc:
            # Not UTF-8, an integer of more than 4300 digits, nesting too deep.
            raise RequestError.from_items(
                400,
                [_item("malformed_json", "body", "UTF-8 JSON", str(exc)[:120])],
            ) from None

        # Count before validating, so an oversized request costs little.
        records = data.get("records") if isinstance(data, dict) else None
        limit = self.settings.max_records
        if isinstance(records, list) and len(records) > limit:
            raise RequestError.from_items(
                413,
                [
                    _item(
                        "too_many_records",
                        "records",
                        f"at most {limit:,} records per request",
                        f"{len(records):,} records",
                    )
                ],
            )
        try:
            request = PredictRequest.model_validate(data)
        except ValidationError as exc:
            raise RequestError.from_items(422, _pydantic_items(exc, data)) from None
        rows = _records_to_table(request.records, model.schema)
        want = request.scores if scores is None else scores
        return ScoreJob(model=model, rows=rows, want_scores=want)

    async def predict(
        self,
        request: Request,
        scores: bool | None,
        score: Callable[[ScoreJob], Awaitable[ScoreOutcome]],
    ) -> JSONResponse:
        """Answer `POST /v1/predict`; never raises, never leaks a traceback.

        Args:
            request: the HTTP request.
            scores: the `?scores=` query flag.
            score: scores one job (batched on Ray Serve, directly in the plain app).
        """
        try:
            if self.model is None:
                raise RequestError(503, "not_ready", "no model is loaded yet")
            self.authorize(request.headers.get("authorization"))
            job = self.parse(await self.read_body(request), scores)
            outcome = await score(job)
            if outcome.error is not None:
                raise outcome.error
        except RequestError as exc:
            if self._metrics is not None:
                self._metrics.bad_request(exc.kind)
            return exc.response()
        except Exception:
            logger.exception("predict failed")
            return RequestError(
                500, "internal", "scoring failed on the server; its log has the details"
            ).response()
        if self._metrics is not None:
            self._metrics.predictions(
                job.model.scorer.classes, outcome.codes, job.model.scorer.version
            )
        headers = {
            BATCH_SIZE_HEADER: str(outcome.batch_requests),
            MODEL_VERSION_HEADER: job.model.scorer.version,
        }
        return JSONResponse(outcome.body, headers=headers)

    def model_info(
        self, request: Request, extra: dict[str, Any] | None = None
    ) -> JSONResponse:
        """Answer `GET /v1/model`: version, classes, feature schema (and `extra`)."""
        try:
            if self.model is None:
                raise RequestError(503, "not_ready", "no model is loaded yet")
            self.authorize(request.headers.get("authorization"))
        except RequestError as exc:
            if self._metrics is not None:
                self._metrics.bad_request(exc.kind)
            return exc.response()
        info = self.model.info()
        info["limits"] = {
            "max_records": self.settings.max_records,
            "max_body_bytes": self.settings.max_body_bytes,
            "max_batch_size": self.settings.max_batch_size,
            "batch_wait_timeout_s": self.settings.batch_wait_timeout_s,
        }
        info.update(extra or {})
        return JSONResponse(info)

    def readiness(self) -> JSONResponse:
        """Answer `GET /readyz`: 200 once a model is loaded, else 503."""
        if self.model is None:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True, "model_version": self.model.scorer.version})


def _loc(parts: tuple[Any, ...]) -> str:
    """A pydantic location as a field path: `records[3].DATA_1`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


_PYDANTIC_EXPECTED = {
    "missing": "this required field",
    "dict_type": "an object mapping column names to values",
    "list_type": "an array of records",
    "too_short": "at least 1 record",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
}


def _pydantic_items(exc: ValidationError, data: Any) -> list[dict[str, str]]:
    """Pydantic's errors as error items naming the field."""
    items = []
    for err in exc.errors():
        where = _loc(err["loc"])
        if err["type"] == "extra_forbidden":
            expected, found = "only `records` and `scores`", f"unknown field {where!r}"
        elif err["type"] == "model_type" and not err["loc"]:
            expected, found = 'an object like {"records": [...]}', _describe(data)
        else:
            expected = _PYDANTIC_EXPECTED.get(err["type"], err["msg"].lower())
            found = _describe(err.get("input"))
        items.append(_item("invalid_body", where, expected, found))
    return items


def _install_error_handlers(api: FastAPI) -> None:
    """Query-parameter errors in the same shape as every other error answer."""

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        items = [
            _item(
                "invalid_query",
                _loc(tuple(err["loc"])),
                _PYDANTIC_EXPECTED.get(err["type"], err["msg"].lower()),
                _describe(err.get("input")),
            )
            for err in exc.errors()
        ]
        return RequestError.from_items(422, items).response()


_PREDICT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}
_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PredictResponse},
    400: {"model": ErrorResponse, "description": "malformed JSON"},
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    413: {"model": ErrorResponse, "description": "body or record count over limit"},
    422: {"model": ErrorResponse, "description": "a record does not fit the schema"},
}
ScoresFlag = Query(None, description="also return every class's score")


# -- the Ray Serve deployment -----------------------------------------------------------


_serve_api = FastAPI(
    title="iids scoring",
    version="1",
    description="Scores raw network records with an iids model bundle.",
)
_install_error_handlers(_serve_api)


@serve.deployment(
    name=DEPLOYMENT_NAME,
    max_ongoing_requests=64,
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 32,
    },
    ray_actor_options={"num_cpus": 1},
    graceful_shutdown_timeout_s=30,
)
@serve.ingress(_serve_api)
class Detector:
    """A Serve replica: one loaded bundle, batched scoring, the HTTP routes.

    Args:
        settings: `ServeSettings` as a mapping; usually left out and given as the
            deployment's `user_config`, which Serve passes to `reconfigure`.
    """

    def __init__(self, settings: dict[str, Any] | None = None):
        from iids.config import configure_logging, storage_from_env

        configure_logging()
        self._storage = storage_from_env()
        self._metrics = _Metrics()
        self._online: OnlineScorer | None = None
        if settings is not None:
            self.reconfigure(settings)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a new `user_config`: batching, limits, token, and maybe a new bundle."""
        settings = parse_settings(user_config)
        if self._online is None:
            self._online = OnlineScorer(
                settings, storage=self._storage, metrics=self._metrics
            )
        else:
            self._online.update(settings)
        self._score_batch.set_max_batch_size(settings.max_batch_size)
        self._score_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    def check_health(self) -> None:
        """Serve's health check: unhealthy until a model is loaded."""
        if self._online is None or not self._online.ready:
            raise RuntimeError(
                "no model loaded: give the deployment a user_config with model_uri "
                "(see serve/config.yaml)"
            )

    @_serve_api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @_serve_api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        if self._online is None:
            return JSONResponse({"ready": False}, status_code=503)
        return self._online.readiness()

    @_serve_api.get(API_PREFIX + "/model")
    async def model(self, request: Request) -> JSONResponse:
        if self._online is None:
            return JSONResponse({"ready": False}, status_code=503)
        replica = serve.get_replica_context().replica_id.unique_id
        return self._online.model_info(request, {"replica": replica})

    @_serve_api.post(
        API_PREFIX + "/predict",
        openapi_extra=_PREDICT_DOC,
        responses=_PREDICT_RESPONSES,
    )
    async def predict(self, request: Request, scores: bool | None = ScoresFlag):
        if self._online is None:
            return JSONResponse({"ready": False}, status_code=503)
        return await self._online.predict(request, scores, self._score_batch)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _score_batch(self, jobs: list[ScoreJob]) -> list[ScoreOutcome]:
        # The model runs in a thread so the replica keeps accepting and validating
        # requests (which then wait for the next batch) while a batch is scored.
        outcomes = await asyncio.to_thread(score_jobs, jobs)
        self._metrics.batch(len(jobs))
        return outcomes


def build_app(
    settings: ServeSettings | dict[str, Any],
    *,
    min_replicas: int = 1,
    max_replicas: int = 2,
    max_ongoing_requests: int | None = None,
    num_cpus: float = 1.0,
) -> serve.Application:
    """The Serve application for one bundle, ready for `serve.run`.

    Args:
        settings: the endpoint settings; they become the deployment's `user_config`.
        min_replicas, max_replicas: the autoscaling range.
        max_ongoing_requests: per replica; raised to twice `max_batch_size` when lower,
            so a full batch can gather while the previous one is scored.
        num_cpus: CPUs reserved per replica.

    Raises:
        ValueError: invalid settings or replica counts.
    """
    settings = parse_settings(settings)
    if not 1 <= min_replicas <= max_replicas:
        raise ValueError(
            f"replicas: expected 1 <= min_replicas <= max_replicas, found "
            f"min_replicas={min_replicas}, max_replicas={max_replicas}"
        )
    ongoing = max(max_ongoing_requests or 0, 2 * settings.max_batch_size)
    return Detector.options(
        user_config=settings.model_dump(),
        max_ongoing_requests=ongoing,
        autoscaling_config={
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": settings.max_batch_size,
        },
        ray_actor_options={"num_cpus": num_cpus},
    ).bind()


def app_builder(args: dict[str, Any] | None = None) -> serve.Application:
    """An application builder for `serve run` / `serve deploy` import paths.

    With `ServeSettings` keys in `args` (`serve run serve.app:build model_uri=...`),
    they become the `user_config`; without, the config file's `user_config` gives them.
    """
    if not args:
        return Detector.bind()
    return build_app(dict(args))


# -- the same endpoint without Ray ------------------------------------------------------


def create_plain_app(
    settings: ServeSettings | dict[str, Any], *, storage: Storage | None = None
) -> FastAPI:
    """The same endpoint as a single-process FastAPI app, without Ray or batching.

    Same validation, scoring core and answers as the deployment; each request is
    scored on its own. The latency benchmark runs it on uvicorn as the baseline.
    """
    online = OnlineScorer(settings, storage=storage)
    api = FastAPI(title="iids scoring (plain)", version="1")
    _install_error_handlers(api)

    async def score(job: ScoreJob) -> ScoreOutcome:
        return (await asyncio.to_thread(score_jobs, [job]))[0]

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        return online.readiness()

    @api.get(API_PREFIX + "/model")
    async def model(request: Request) -> JSONResponse:
        return online.model_info(request)

    @api.post(
        API_PREFIX + "/predict",
        openapi_extra=_PREDICT_DOC,
        responses=_PREDICT_RESPONSES,
    )
    async def predict(request: Request, scores: bool | None = ScoresFlag):
        return await online.predict(request, scores, score)

    return api
