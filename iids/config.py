"""Configuration: validated run settings, environment lookups and logging set-up.

This is the only module of iids that reads environment variables. Settings that arrive from
YAML or the command line are Pydantic models, validated when they are built, with errors
that name the offending key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iids._errors import validation_problems
from iids.datasets import DatasetAdapter, get_adapter
from iids.model import HybridConfig
from iids.smote import SamplingConfig
from iids.storage import Storage

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Strict):
    """Layer sizes of the hybrid model (see `iids.model`)."""

    channels: int = Field(32, ge=1, description="convolution channels per block")
    num_blocks: int = Field(2, ge=0, description="residual blocks after the stem")
    kernel_size: int = Field(3, ge=1, description="odd convolution width")
    strides: tuple[int, ...] = Field(
        (1, 1), description="one stride (1 or 2) per block"
    )
    gru_hidden: int = Field(32, ge=1, description="GRU hidden size per direction")
    gru_layers: int = Field(1, ge=1)
    num_heads: int = Field(4, ge=1, description="attention heads; divide 2*gru_hidden")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    def build(self) -> HybridConfig:
        return HybridConfig(**self.model_dump())


class SamplingSettings(_Strict):
    """How the training split is balanced (see `iids.smote`)."""

    strategy: Literal["ratio", "balance", "per_class", "none"] = "ratio"
    ratio: float = Field(0.25, gt=0.0, le=1.0)
    targets: dict[str, int] = Field(default_factory=dict)
    majority_cap: int | None = Field(100_000, ge=1)
    k_neighbors: int = Field(5, ge=1)
    max_memory_mb: int = Field(4096, ge=1)

    def build(self, seed: int) -> SamplingConfig:
        return SamplingConfig(**self.model_dump(), seed=seed)


class TrainSettings(_Strict):
    """Everything a training run needs; saved resolved beside its outputs.

    Batch size is global: each of `num_workers` workers takes `batch_size / num_workers`
    rows per step, so the optimiser sees the same batch and the learning rate does not
    change with the worker count.
    """

    dataset: str = "ciciov2024"
    encoding: Literal["decimal", "hex", "binary"] = "decimal"
    schema_file: str | None = Field(
        None, description="YAML schema of a generic dataset (dataset: generic)"
    )
    task: str | None = None
    protocol: Literal["honest", "paper"] = "honest"
    compare_protocols: bool = Field(
        False, description="also train and test under the other protocol for the report"
    )
    group_column: str | None = Field(
        None, description="keep each value of this column inside one split part"
    )
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(1024, ge=2, description="global batch size")
    learning_rate: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    patience: int = Field(2, ge=1, description="epochs without val macro-F1 gain")
    min_rows_per_epoch: int = Field(
        50_000, ge=0, description="repeat a smaller training split up to this many rows"
    )
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    mixed_precision: bool = Field(
        False, description="bf16 autocast for convolutions and attention (GRU in fp32)"
    )
    cpus_per_worker: float = Field(1.0, gt=0.0)
    threads_per_worker: int = Field(1, ge=1, description="torch threads per worker")
    max_failures: int = Field(2, ge=0, description="worker failures tolerated")
    seed: int = 0
    baseline: bool = True
    baseline_max_iter: int = Field(
        50, ge=1, description="boosting rounds of the baseline"
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)

    def adapter(self) -> DatasetAdapter:
        """The dataset adapter these settings name (raises ValueError if unknown)."""
        return get_adapter(
            self.dataset, encoding=self.encoding, schema=self.schema_file
        )

    def per_worker_batch(self) -> int:
        return max(1, self.batch_size // self.num_workers)


def load_train_settings(path: str | Path | None, **overrides: object) -> TrainSettings:
    """Read a YAML training config and apply command-line overrides (None = unset).

    Raises:
        ConfigError: unreadable YAML, an unknown key, or a value out of range; the
            message names the file and the key.
    """
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: expected a mapping of settings, found {type(data).__name__}"
            )
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainSettings(**data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ConfigError(f"{path or 'settings'}: {problems}") from None


def storage_from_env() -> Storage:
    """The storage settings from the environment (`IIDS_S3_ENDPOINT`, `AWS_REGION`)."""
    return Storage(
        endpoint_override=os.environ.get("IIDS_S3_ENDPOINT") or None,
        region=os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or None,
    )


def data_dir() -> Path:
    """Where the real datasets live (`IIDS_DATA_DIR`, default `../shared/data`)."""
    return Path(os.environ.get("IIDS_DATA_DIR", "../shared/data"))


def ray_address() -> str | None:
    """The Ray cluster to join (`RAY_ADDRESS`), or None for a local Ray."""
    return os.environ.get("RAY_ADDRESS") or None


def configure_logging(verbose: bool = False) -> None:
    """Set up logging once, in entry points: iids at INFO (DEBUG when verbose)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("ray", "filelock", "urllib3", "botocore", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve_token() -> str | None:
    """The bearer token of the scoring endpoint, or None when it is open.

    `IIDS_SERVE_TOKEN` holds the token itself; `IIDS_SERVE_TOKEN_FILE` names a file
    holding it (a mounted secret). The first one set wins.

    Raises:
        ValueError: the token file cannot be read or is empty.
    """
    token = os.environ.get("IIDS_SERVE_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("IIDS_SERVE_TOKEN_FILE")
    return read_token_file(path) if path else None


def read_token_file(path: str | Path) -> str:
    """A bearer token from a secret file (surrounding whitespace dropped).

    Raises:
        ValueError: the file cannot be read or holds no token.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"token file {path}: cannot read it: {exc}") from exc
    if not token:
        raise ValueError(f"token file {path}: expected a token, found an empty file")
    return token
