"""Model bundles: everything needed to score raw rows, in one versioned directory.

A bundle holds the weights as safetensors (loading never unpickles code), the model sizes,
the fitted preprocessing, the label map, the dataset schema, the resolved training config,
and the evaluation report with its plots. Batch and online scoring load only bundles.

    <root>/<version>/
        model.safetensors   model.json   preprocessing.json   labels.json
        schema.json   config.json   report.json   report.md   *.png
    <root>/PROMOTED.json    which version batch scoring uses when given <root>

`promote` points a models root at one of its bundles; `resolve_bundle` turns a root (or a
bundle) into the bundle to load, so a nightly job configured with the root scores with
whichever version was promoted last, without a config change per training run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import torch
from safetensors.torch import load_file, save_file

from iids.datasets import DatasetAdapter, Task
from iids.model import HybridConfig, HybridIDS
from iids.preprocess import Preprocessor
from iids.storage import Storage, is_s3, join

logger = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
PROMOTED = "PROMOTED.json"
_REQUIRED = (WEIGHTS, "model.json", "preprocessing.json", "labels.json", "schema.json")


def new_version() -> str:
    """A sortable, unique bundle version: UTC time plus a short random suffix."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:6]}"


@dataclass
class Bundle:
    """A loaded model bundle.

    Attributes:
        version: the bundle's version (its directory name).
        model: the hybrid model in eval mode, on the CPU.
        preprocessor: raw rows to features.
        adapter: the dataset schema the model was trained on.
        task: the task, whose `classes` give the label map (code -> name).
        config: the resolved training config.
        report: the evaluation report, if the bundle has one.
    """

    version: str
    model: HybridIDS
    preprocessor: Preprocessor
    adapter: DatasetAdapter
    task: Task
    config: dict[str, Any]
    report: dict[str, Any] | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.task.classes)


def save_bundle(
    root_uri: str,
    version: str,
    *,
    state_dict: dict[str, torch.Tensor],
    model_config: HybridConfig,
    num_features: int,
    preprocessor: Preprocessor,
    adapter: DatasetAdapter,
    task: Task,
    config: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
    storage: Storage | None = None,
) -> str:
    """Write a bundle under `root_uri/version` and return its URI.

    The files are written to a local temporary directory first and copied in one go, so
    a failed save leaves no partial bundle behind the version name.
    """
    storage = storage or Storage()
    uri = join(root_uri, version)
    with tempfile.TemporaryDirectory(prefix="iids-bundle-") as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, os.path.join(tmp, WEIGHTS))
        files: dict[str, Any] = {
            "model.json": {
                "version": version,
                "architecture": "resnet1d-bigru-mha",
                "num_features": num_features,
                "num_classes": len(task.classes),
                "config": model_config.to_dict(),
            },
            "preprocessing.json": preprocessor.to_dict(),
            "labels.json": {"task": task.name, "classes": list(task.classes)},
            "schema.json": adapter.to_dict(),
            "config.json": config,
        }
        for name, obj in files.items():
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(obj, f, indent=2)
        for name, data in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        staging = f"{uri}.staging-{uuid.uuid4().hex[:6]}"
        storage.upload_dir(tmp, staging)
    storage.move_dir(staging, uri)
    logger.info("model bundle written: %s", uri)
    return uri


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle says about itself, read without loading its weights.

    Attributes:
        version: the bundle's version.
        preprocessor: raw rows to features (its `input_columns` are what rows need).
        adapter: the dataset schema the model was trained on.
        task: the task, whose `classes` give the label map (code -> name).
        model_json: `model.json`: sizes and architecture.
    """

    version: str
    preprocessor: Preprocessor
    adapter: DatasetAdapter
    task: Task
    model_json: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.task.classes)

    @property
    def negative_class(self) -> str:
        """The class that is not an attack (benign traffic)."""
        return self.adapter.negative_class[self.task.name]


def read_bundle_info(uri: str, storage: Storage | None = None) -> BundleInfo:
    """Read a bundle's version, preprocessing, schema and classes (a few small files).

    Raises:
        FileNotFoundError: nothing is at `uri`, or it is not a bundle (the message
            lists what is missing).
        ValueError: the label map and the schema disagree.
    """
    storage = storage or Storage()
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"{uri}: no such model bundle (nothing is there). Pass the directory that "
            "`iids train` printed (…/models/<version>)."
        )
    missing = [name for name in _REQUIRED if not storage.exists(join(uri, name))]
    if missing:
        hint = "Pass the directory that `iids train` printed (…/models/<version>)."
        if storage.exists(join(uri, PROMOTED)):
            promoted = join(uri, _read_promoted(uri, storage)["version"])
            hint = (
                f"It is a models root whose promoted bundle is {promoted}; pass that "
                "bundle here (only batch scoring and evaluation follow a root's "
                "promotion)."
            )
        elif versions := _bundle_versions(uri, storage):
            shown = ", ".join(versions[-3:]) + (", …" if len(versions) > 3 else "")
            hint = (
                f"It is a models root holding {len(versions)} bundle(s) ({shown}) "
                f"but none is promoted: promote one with `iids promote "
                f"{uri}/<version>`, or pass a bundle directory."
            )
        raise FileNotFoundError(
            f"{uri} is not a model bundle: missing {missing}. {hint}"
        )
    meta = storage.read_json(join(uri, "model.json"))
    labels = storage.read_json(join(uri, "labels.json"))
    adapter = DatasetAdapter.from_dict(storage.read_json(join(uri, "schema.json")))
    preprocessor = Preprocessor.from_dict(
        storage.read_json(join(uri, "preprocessing.json"))
    )
    task = adapter.task(labels["task"])
    if list(task.classes) != labels["classes"]:
        raise ValueError(
            f"{uri}: labels.json classes {labels['classes']} differ from the schema's "
            f"task {task.name!r} classes {list(task.classes)}"
        )
    return BundleInfo(meta["version"], preprocessor, adapter, task, meta)


def load_bundle(uri: str, storage: Storage | None = None) -> Bundle:
    """Load a bundle for scoring.

    Raises:
        FileNotFoundError: nothing is at `uri`, or it is not a bundle (the message
            lists what is missing).
        ValueError: the label map and the schema disagree.
    """
    storage = storage or Storage()
    info = read_bundle_info(uri, storage)
    meta = info.model_json
    config = storage.read_json(join(uri, "config.json"))
    report = None
    if storage.exists(join(uri, "report.json")):
        report = storage.read_json(join(uri, "report.json"))

    # Weights: safetensors bytes, no pickle.
    with tempfile.TemporaryDirectory(prefix="iids-weights-") as tmp:
        path = os.path.join(tmp, WEIGHTS)
        with open(path, "wb") as f:
            f.write(storage.read_bytes(join(uri, WEIGHTS)))
        state = load_file(path)
    model = HybridIDS(
        meta["num_features"],
        meta["num_classes"],
        HybridConfig.from_dict(meta["config"]),
    )
    model.load_state_dict(state)
    model.eval()
    return Bundle(
        info.version,
        model,
        info.preprocessor,
        info.adapter,
        info.task,
        config,
        report,
    )


def promote(bundle_uri: str, storage: Storage | None = None) -> dict[str, Any]:
    """Make a bundle the one its models root resolves to (`resolve_bundle`).

    The bundle is checked first, then `<root>/PROMOTED.json` is replaced in one write;
    promoting an older bundle rolls back.

    Returns:
        What was written (version, bundle, promoted_at, the test macro-F1 from the
        bundle's report when it has one) and the version it replaced, if any.

    Raises:
        FileNotFoundError: `bundle_uri` is not a bundle.
        ValueError: its directory name is not its version, or the root's current
            pointer is damaged.
    """
    storage = storage or Storage()
    bundle_uri = bundle_uri.rstrip("/")
    if not is_s3(bundle_uri):
        bundle_uri = os.path.abspath(bundle_uri)
    info = read_bundle_info(bundle_uri, storage)
    root, _, name = bundle_uri.rpartition("/")
    if name != info.version:
        raise ValueError(
            f"{bundle_uri}: a bundle is promoted in the root it was written to, so its "
            f"directory name must be its version; found directory {name!r}, version "
            f"{info.version!r}"
        )
    pointer = join(root, PROMOTED)
    previous = (
        _read_promoted(root, storage)["version"] if storage.exists(pointer) else None
    )
    report_uri = join(bundle_uri, "report.json")
    metrics = (
        storage.read_json(report_uri).get("metrics", {})
        if storage.exists(report_uri)
        else {}
    )
    record = {
        "version": info.version,
        "bundle": bundle_uri,
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "test_macro_f1": metrics.get("macro_f1"),
        "previous_version": previous,
    }
    storage.write_json(pointer, record)
    logger.info("promoted %s in %s (was %s)", info.version, root, previous)
    return record


def resolve_bundle(uri: str, storage: Storage | None = None) -> str:
    """The bundle to load for `uri`: `uri` itself, or the promoted bundle of a root.

    Raises:
        FileNotFoundError: `uri` is neither a bundle nor a root with a promoted
            bundle, or the promoted bundle is gone.
    """
    storage = storage or Storage()
    uri = uri.rstrip("/")
    if storage.exists(join(uri, "model.json")) or not storage.exists(
        join(uri, PROMOTED)
    ):
        return uri  # a bundle, or nothing: read_bundle_info says what is missing
    version = _read_promoted(uri, storage)["version"]
    bundle = join(uri, version)
    if not storage.exists(join(bundle, "model.json")):
        raise FileNotFoundError(
            f"{join(uri, PROMOTED)} promotes version {version!r}, but {bundle} is not a "
            "model bundle (deleted?). Promote another: `iids promote "
            f"{uri}/<version>`."
        )
    return bundle


def _bundle_versions(root: str, storage: Storage) -> list[str]:
    """The names of the bundles directly under `root`, sorted."""
    fs, path = storage.filesystem(root)
    try:
        entries = fs.get_file_info(pafs.FileSelector(path))
    except (FileNotFoundError, NotADirectoryError, OSError):
        return []
    return sorted(
        entry.base_name
        for entry in entries
        if entry.type == pafs.FileType.Directory
        and storage.exists(join(root, entry.base_name, "model.json"))
    )


def _read_promoted(root: str, storage: Storage) -> dict[str, Any]:
    pointer = join(root, PROMOTED)
    try:
        record = storage.read_json(pointer)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{pointer}: not JSON ({exc}); rewrite it with `iids promote "
            f"{root}/<version>`"
        ) from None
    version = record.get("version") if isinstance(record, dict) else None
    if not isinstance(version, str) or not version or "/" in version:
        raise ValueError(
            f"{pointer}: expected a JSON object whose `version` names a directory "
            "beside it, found "
            f"{record!r}; rewrite it with `iids promote {root}/<version>`"
        )
    return record
