"""Job configs and the submission of iids jobs to a Ray cluster.

A job config is one YAML file per run. The training config holds the `TrainSettings`
keys (see `iids.config`) beside the job's own keys (`data`, `output`, `run_name`,
`splits`); the scoring and ingest configs hold their job's arguments. Each is validated
when it is loaded, and an error names the file and the key.

`submit` sends one of the `jobs/` entry points to a cluster as a Ray Job with Ray's
`JobSubmissionClient`: the project's source tree travels as the job's `working_dir`
(which Ray puts first on the job's `PYTHONPATH`), and the pinned requirements of
`pyproject.toml` as its `pip` runtime environment, unless the cluster image already has
them.

Ray 2.60 turns on token authentication for new local clusters (`ray start --head`
enables it when `~/.ray/auth_token` exists or `RAY_AUTH_MODE=token` is set). Ray's
client only sends the token when `RAY_AUTH_MODE=token` is set in the submitting process;
`submit` also sends it when given one explicitly, and `local_auth_token` finds the
local token for a cluster on this machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import shlex
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from iids.config import ConfigError, TrainSettings

logger = logging.getLogger(__name__)

JobKind = Literal["train", "score", "ingest"]

#: The entry point of each job kind, relative to the project root.
ENTRY_POINTS: dict[str, str] = {
    "train": "jobs/train.py",
    "score": "jobs/score_nightly.py",
    "ingest": "jobs/ingest.py",
}

#: Paths of the project root that never travel with a job (Ray's `excludes` syntax,
#: gitignore-style, relative to the working directory).
WORKING_DIR_EXCLUDES: tuple[str, ...] = (
    ".venv/",
    ".git/",
    "runs/",
    "tests/",
    "benchmarks/results/",
    "shared/",
    "**/__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.parquet",
    "*.csv",
    "*.csv.gz",
)

#: Requirements the cluster already has: Ray must match the cluster's own Ray, so it is
#: never installed into a job's environment.
_NEVER_PIP = ("ray",)

#: The exit status of `iids submit --follow` for each terminal job status.
EXIT_CODES: dict[str, int] = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 2}

_DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
#: What Ray's job server answers while no agent can take a job yet.
_NO_AGENT = "No available agent to submit job"


# -- job configs ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainJobConfig(_Strict):
    """A training job: where the data and model go, and the training settings.

    In YAML the settings sit at the top level beside the job keys, so a config reads
    as one flat mapping; `load_job_config` moves them into `settings`.
    """

    data: str | None = Field(None, description="an ingested dataset (URI)")
    output: str | None = Field(None, description="where model bundles are written")
    run_name: str | None = Field(
        None, description="Ray Train run name; reuse to resume"
    )
    splits: str | None = Field(None, description="also write the test split here")
    settings: TrainSettings = Field(default_factory=TrainSettings)

    #: The keys that belong to the job rather than to `TrainSettings`.
    JOB_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"data", "output", "run_name", "splits"}
    )

    def missing(self) -> list[str]:
        """Required keys that are still unset."""
        return [key for key in ("data", "output") if getattr(self, key) is None]


class ScoreJobConfig(_Strict):
    """A batch scoring job (the nightly run): bundle, input rows, output, day."""

    model: str | None = Field(None, description="a model bundle (URI)")
    input: str | None = Field(None, description="ingested Parquet rows (URI)")
    output: str | None = Field(None, description="where predictions are published")
    day: str | None = Field(None, description="YYYY-MM-DD; default: yesterday (UTC)")
    num_actors: int | None = Field(
        None,
        ge=1,
        description="scoring actors; default: one per threads_per_actor CPUs of the "
        "Ray cluster when scoring starts",
    )
    threads_per_actor: int = Field(1, ge=1, description="torch threads per actor")
    alert_attack_share: float | None = Field(
        None, ge=0.0, le=1.0, description="exit 3 with an alert above this attack share"
    )

    @field_validator("day", mode="before")
    @classmethod
    def _iso_day(cls, value: object) -> object:
        # YAML reads an unquoted 2026-01-31 as a date.
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, str):
            try:
                dt.datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                raise ValueError(
                    f"expected a day as YYYY-MM-DD, e.g. 2026-01-31; found {value!r}"
                ) from None
        return value

    def missing(self) -> list[str]:
        """Required keys that are still unset."""
        return [
            key for key in ("model", "input", "output") if getattr(self, key) is None
        ]


class IngestJobConfig(_Strict):
    """An ingest job: raw files of one dataset into partitioned Parquet."""

    dataset: Literal["ciciov2024", "edge-iiotset", "generic"] = "ciciov2024"
    encoding: Literal["decimal", "hex", "binary"] = "decimal"
    schema_file: str | None = Field(None, description="generic: the schema YAML")
    inputs: list[str] = Field(default_factory=list, description="files, dirs, globs")
    output: str | None = Field(None, description="dataset directory to write")

    def missing(self) -> list[str]:
        """Required keys that are still unset."""
        missing = [] if self.inputs else ["inputs"]
        return missing + (["output"] if self.output is None else [])


JobConfig = TrainJobConfig | ScoreJobConfig | IngestJobConfig

_MODELS: dict[str, type[_Strict]] = {
    "train": TrainJobConfig,
    "score": ScoreJobConfig,
    "ingest": IngestJobConfig,
}


def load_job_config(
    kind: JobKind, path: str | Path | None, **overrides: object
) -> JobConfig:
    """Read a job's YAML config and apply command-line overrides (None = unset).

    Args:
        kind: `train`, `score` or `ingest`.
        path: the YAML file, or None for overrides only.
        **overrides: job keys (and, for training, settings keys) that win over the file.

    Returns:
        The validated config; required keys may still be unset (see `missing()`).

    Raises:
        ConfigError: unreadable YAML, an unknown key, or a value out of range; the
            message names the file and the key.
    """
    if kind not in _MODELS:
        raise ConfigError(
            f"job kind: expected one of {sorted(_MODELS)}, found {kind!r}"
        )
    source = str(path) if path is not None else "job config"

    # Read the file, then let the command line win.
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError) as exc:
            # PyYAML raises ValueError for a date that does not exist (2026-13-01).
            raise ConfigError(f"{source}: cannot read the config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: expected a mapping of keys, found {type(data).__name__}"
            )
    data.update({k: v for k, v in overrides.items() if v is not None})

    # Training configs are flat in YAML: everything but the job keys is a setting.
    if kind == "train":
        if "settings" in data:
            raise ConfigError(
                f"{source}: settings: write the training settings at the top level, "
                "beside data/output, not under a `settings:` key"
            )
        job = {k: v for k, v in data.items() if k in TrainJobConfig.JOB_KEYS}
        job["settings"] = {
            k: v for k, v in data.items() if k not in TrainJobConfig.JOB_KEYS
        }
        data = job
    try:
        return _MODELS[kind](**data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """`key: message` for each error, with keys as they are written in the YAML."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] == "settings":
            loc = loc[1:]
        key = ".".join(loc) or "config"
        problems.append(f"{key}: {err['msg']}")
    return "; ".join(problems)


def require(config: JobConfig, source: str | Path | None, flags: str = "") -> None:
    """Raise ConfigError naming every required key that is still unset."""
    missing = config.missing()
    if missing:
        hint = f" or pass {flags}" if flags else ""
        raise ConfigError(
            f"{source or 'job config'}: {', '.join(missing)}: not set; "
            f"add {'them' if len(missing) > 1 else 'it'} to the config{hint}"
        )


def run_job(logger: logging.Logger, what: str, work: Callable[[], int]) -> int:
    """Run a job's work. A failure iids explains (bad input, storage, a missing path)
    ends the job with exit status 1 and its message as the last log line, not a
    traceback; anything else still raises."""
    from iids.storage import StorageError

    try:
        return work()
    except (StorageError, FileNotFoundError, ValueError) as exc:
        logger.error("%s failed: %s", what, exc)
        return 1


def yesterday_utc(now: dt.datetime | None = None) -> str:
    """The day before `now` (default: the current UTC time), as YYYY-MM-DD."""
    now = now or dt.datetime.now(dt.UTC)
    return (now.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


# -- the job's environment ---------------------------------------------------------------


def find_project_root(start: str | Path | None = None) -> Path:
    """The source checkout holding `pyproject.toml` and `jobs/`, searched upwards.

    Raises:
        FileNotFoundError: no such directory above `start` (default: this package).
    """
    here = Path(start or Path(__file__).parent).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "jobs").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no iids source checkout (pyproject.toml beside jobs/) at or above {here}; "
        "run `iids submit` from a clone of the project"
    )


def pinned_requirements(
    pyproject: str | Path, exclude: Sequence[str] = _NEVER_PIP
) -> list[str]:
    """The `[project] dependencies` of a pyproject.toml, without the excluded names.

    Raises:
        ValueError: a dependency is not pinned with `==`.
    """
    with open(pyproject, "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    kept = []
    for req in deps:
        name = req.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()
        if "==" not in req:
            raise ValueError(
                f"{pyproject}: dependency {req!r} is not pinned; jobs install exact "
                "versions, so write it as name==version"
            )
        if name.lower() not in {e.lower() for e in exclude}:
            kept.append(req)
    return kept


def build_runtime_env(
    project_root: str | Path,
    *,
    install_pip: bool = True,
    env_vars: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The runtime environment of an iids job.

    Args:
        project_root: the source checkout; it travels as the job's working directory.
        install_pip: install the pinned requirements (skip when the cluster image
            already has iids installed, e.g. `infra/docker/Dockerfile`).
        env_vars: extra environment variables for the job's processes.
    """
    root = Path(project_root).resolve()
    runtime_env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": list(WORKING_DIR_EXCLUDES),
    }
    if install_pip:
        runtime_env["pip"] = {
            "packages": pinned_requirements(root / "pyproject.toml"),
            "pip_check": False,
        }
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    return runtime_env


def job_entrypoint(kind: JobKind, config_rel: str, job_args: Sequence[str] = ()) -> str:
    """The shell command of a job: its entry point, its config, any extra flags."""
    return shlex.join(["python", ENTRY_POINTS[kind], "--config", config_rel, *job_args])


def local_auth_token(
    address: str, token_file: str | Path = _DEFAULT_TOKEN_FILE
) -> str | None:
    """This machine's Ray token, for a cluster on this machine only (else None).

    A token is a secret: it is only sent unasked to a loopback address.
    """
    host = urlparse(address if "://" in address else f"http://{address}").hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        loopback = False
    path = Path(token_file).expanduser()
    if not loopback or not path.is_file():
        return None
    return path.read_text().strip() or None


def read_auth_token(token_file: str | Path) -> str:
    """A Ray token from a file (`ray get-auth-token` prints one).

    Raises:
        FileNotFoundError: no such file, or it is empty.
    """
    path = Path(token_file).expanduser()
    try:
        # Not `is_file()`: a shell's <(…) hands over a pipe.
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise FileNotFoundError(
            f"{path}: no Ray authentication token there; copy the cluster's token "
            "(`ray get-auth-token` on the head node) into it"
        )
    return token


# -- submission ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    """What `submit` did: the job, where, and (when followed) how it ended."""

    job_id: str
    address: str
    entrypoint: str
    status: str | None
    exit_code: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "address": self.address,
            "entrypoint": self.entrypoint,
            "status": self.status,
            "exit_code": self.exit_code,
        }


def submit(
    kind: JobKind,
    address: str,
    config: str | Path,
    *,
    follow: bool = False,
    job_args: Sequence[str] = (),
    install_pip: bool = True,
    auth_token: str | None = None,
    env_vars: Mapping[str, str] | None = None,
    entrypoint_num_cpus: float | None = None,
    project_root: str | Path | None = None,
    write: Callable[[str], Any] | None = None,
    agent_wait_s: float = 120.0,
) -> SubmitResult:
    """Submit a `jobs/` entry point to a Ray cluster as a Ray Job.

    The config is validated here first, so a bad key fails before anything travels.

    Args:
        kind: `train` (jobs/train.py), `score` (jobs/score_nightly.py) or `ingest`.
        address: the cluster's dashboard, e.g. `http://HEAD:8265`. Ray lets the
            `RAY_API_SERVER_ADDRESS` or `RAY_ADDRESS` environment variable override it.
        config: the job's YAML config, inside the project (it travels with it).
        follow: stream the job's logs to `write` until it ends.
        job_args: extra flags for the entry point, e.g. `["--data", "s3://b/d"]`.
        install_pip: install the pinned requirements into the job's environment.
        auth_token: the cluster's Ray token, sent as `Authorization: Bearer`.
        env_vars: extra environment variables for the job.
        entrypoint_num_cpus: CPUs reserved for the driver process.
        project_root: the source checkout (default: the one holding this package).
        write: where followed logs go (default: the module logger).
        agent_wait_s: how long to retry while a new head has no job agent yet.

    Returns:
        The job id, and when followed its final status and exit code
        (`EXIT_CODES`; 0 when not followed).

    Raises:
        ConfigError: the config is invalid or lies outside the project.
        FileNotFoundError: no such config or project.
        RuntimeError: the cluster refused the job or could not be reached.
    """
    from ray.job_submission import JobSubmissionClient

    # Validate the config where the user can fix it.
    root = find_project_root(project_root)
    config_path = Path(config).resolve()
    if not config_path.is_file():
        raise FileNotFoundError(f"{config}: no such job config")
    try:
        config_rel = config_path.relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(
            f"{config}: the config must lie inside the project at {root} so that it "
            "travels with the job; copy it under jobs/configs/"
        ) from None
    job_config = load_job_config(kind, config_path)
    if not job_args:
        require(job_config, config, "them after `--`")

    # Connect, then submit.
    runtime_env = build_runtime_env(root, install_pip=install_pip, env_vars=env_vars)
    entrypoint = job_entrypoint(kind, config_rel, job_args)
    headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else None
    try:
        client = JobSubmissionClient(address, headers=headers)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RuntimeError(_connection_help(address, exc)) from exc
    resolved = client.get_address()
    if resolved.rstrip("/") != address.rstrip("/"):
        logger.warning(
            "submitting to %s, not %s: RAY_API_SERVER_ADDRESS or RAY_ADDRESS is set "
            "and Ray gives it precedence",
            resolved,
            address,
        )
    # A head that has just started answers before its agent takes jobs: retry that.
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                metadata={"iids_job": kind, "iids_config": config_rel},
                entrypoint_num_cpus=entrypoint_num_cpus,
            )
            break
        except RuntimeError as exc:
            if _NO_AGENT in str(exc) and time.monotonic() < deadline:
                logger.info("the job server has no agent yet; retrying")
                time.sleep(2.0)
                continue
            raise RuntimeError(
                f"{resolved}: the cluster refused the job: {exc}"
            ) from exc
    logger.info("submitted %s job %s to %s: %s", kind, job_id, resolved, entrypoint)
    if not follow:
        return SubmitResult(job_id, resolved, entrypoint, None, 0)

    # Follow the logs to the end, then report how the job ended.
    status = follow_job(client, job_id, write or _log_lines)
    return SubmitResult(job_id, resolved, entrypoint, status, EXIT_CODES.get(status, 1))


def follow_job(client: Any, job_id: str, write: Callable[[str], Any]) -> str:
    """Stream a job's logs to `write` until it ends; return its final status."""

    async def _tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(_tail())
    status = client.get_job_status(job_id)
    # The log stream closes when the job ends; its status can trail by a moment.
    for _ in range(50):
        if status.is_terminal():
            break
        asyncio.run(asyncio.sleep(0.2))
        status = client.get_job_status(job_id)
    logger.info("job %s ended %s", job_id, status.value)
    return status.value


def _log_lines(chunk: str) -> None:
    for line in chunk.rstrip("\n").splitlines():
        logger.info("[job] %s", line)


def _connection_help(address: str, exc: BaseException) -> str:
    text = str(exc)
    if "Authentication" in text or "401" in text or "403" in text:
        return (
            f"{address}: the cluster requires a Ray authentication token: pass "
            "--auth-token-file FILE (the head's `ray get-auth-token`), or set "
            f"RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH ({text})"
        )
    return f"{address}: cannot reach the Ray job server: {text}"
