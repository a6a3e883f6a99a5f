"""Training: split, fit preprocessing, balance, train on Ray Train, evaluate, save a bundle.

The driver reads the ingested dataset with Ray Data, splits it under the chosen protocol,
fits scaling on the training part only, balances the training part with SMOTE (one Ray task
per class), and hands training and validation rows to a Ray Train `TorchTrainer` as Ray
Datasets. Each worker reads its shard (`get_dataset_shard` + `iter_torch_batches`) and trains
the model under DDP (gloo on CPU, nccl on GPU). Every epoch ends with a checkpoint holding the
model, optimiser, scheduler, epoch, best metric and fitted preprocessing, reported with
`ray.train.report`; a restarted worker group resumes from `ray.train.get_checkpoint()`.
Training stops early when validation macro-F1 has not improved for `patience` epochs, and the
best epoch's weights go into the bundle.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iids.bundle import new_version, save_bundle
from iids.config import TrainSettings
from iids.data import read_dataset
from iids.datasets import DatasetAdapter, Task, canonical_category
from iids.evaluate import (
    class_counts_png,
    classification_metrics,
    confusion_png,
    curves_png,
    latency_us_per_row,
    macro_f1_from_confusion,
    report_markdown,
)
from iids.ingest import KEY_COLUMNS
from iids.model import HybridIDS, for_inference
from iids.preprocess import Preprocessor
from iids.scoring import predict_proba
from iids.smote import balance
from iids.split import PROTOCOLS, split_rows
from iids.storage import Storage, join

logger = logging.getLogger(__name__)

_STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced."""

    bundle_uri: str
    report: dict[str, Any]
    test_split_uri: str | None


def encode_labels(table: pa.Table, task: Task) -> np.ndarray:
    """Integer class codes of a table's label column (code i is `task.classes[i]`).

    Raises:
        ValueError: a label is not a class of the task (names the value and row).
    """
    raw = pc.utf8_trim_whitespace(table[task.label_column].combine_chunks())
    encoded = pc.dictionary_encode(raw)
    lookup = {name: i for i, name in enumerate(task.classes)}
    codes_of_dict = []
    for value in encoded.dictionary.to_pylist():
        name = task.class_of(value)
        if name is None:
            row = int(np.flatnonzero(np.asarray(pc.equal(raw, value)))[0])
            raise ValueError(
                f"column {task.label_column!r}, row {row}: label {value!r} is not a class "
                f"of task {task.name!r} {list(task.classes)}"
            )
        codes_of_dict.append(lookup[name])
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return np.asarray(codes_of_dict, dtype=np.int64)[indices]


def raw_feature_matrix(table: pa.Table, adapter: DatasetAdapter) -> np.ndarray:
    """Feature columns as one float64 matrix (categories by code), for duplicate search."""
    columns = [
        np.asarray(table[c].to_numpy(), dtype=np.float64)
        for c in adapter.numeric_features
    ]
    for c in adapter.categorical_features:
        codes = pc.dictionary_encode(canonical_category(table[c])).indices
        columns.append(codes.to_numpy(zero_copy_only=False).astype(np.float64))
    return np.column_stack(columns)


@dataclass
class _Experiment:
    """One protocol's split, balanced training, fitted model and test metrics."""

    protocol: str
    seed: int
    split: Any
    preprocessor: Preprocessor
    sampling: Any
    history: list[dict]
    best_state: dict
    epochs_run: int
    rows_after_smote: int
    rows_per_epoch: int
    metrics: dict[str, Any]
    baseline: dict[str, Any] | None
    test_rows: pa.Table

    def summary(self, rows_read: int) -> dict[str, Any]:
        """The report's keys for this protocol."""
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "rows": {
                "read": rows_read,
                "train": len(self.split.train),
                "train_after_smote": self.rows_after_smote,
                "val": len(self.split.val),
                "test": len(self.split.test),
                "duplicates_removed": self.split.duplicates_removed,
                "conflicting_features": self.split.conflicting_features,
                "train_test_overlap": self.split.train_test_overlap,
            },
            **self.metrics,
            "baseline": self.baseline,
            "scored_rows": len(self.split.test),
            "sampling": self.sampling.to_dict(),
        }


def load_labelled(
    data_uri: str, settings: TrainSettings, storage: Storage
) -> tuple[DatasetAdapter, Task, pa.Table, np.ndarray]:
    """The adapter, the task, the typed rows the model needs and their class codes."""
    adapter = settings.adapter()
    task = adapter.task(settings.task)
    _check_ingested_as(data_uri, adapter.name, storage)
    wanted = [
        *adapter.numeric_features,
        *adapter.categorical_features,
        task.label_column,
        *KEY_COLUMNS,
    ]
    if settings.group_column and settings.group_column not in wanted:
        wanted.append(settings.group_column)
    table = _load(data_uri, storage, wanted)
    labels = encode_labels(table, task)
    counts = np.bincount(labels, minlength=len(task.classes)).tolist()
    logger.info(
        "loaded %d rows from %s; classes %s",
        table.num_rows,
        data_uri,
        dict(zip(task.classes, counts, strict=True)),
    )
    return adapter, task, table, labels


def run_protocol(
    table: pa.Table,
    labels: np.ndarray,
    adapter: DatasetAdapter,
    task: Task,
    settings: TrainSettings,
    *,
    protocol: str,
    seed: int,
    output_uri: str,
    run_name: str,
    storage: Storage,
) -> _Experiment:
    """Split under `protocol`, fit preprocessing and SMOTE on train, train, test."""
    classes = list(task.classes)

    # Split, then fit preprocessing on the training part only.
    groups = None
    if settings.group_column:
        if settings.group_column not in table.column_names:
            raise ValueError(
                f"group_column {settings.group_column!r} is not a column of the data; "
                f"columns: {table.column_names}"
            )
        groups = table[settings.group_column].to_numpy(zero_copy_only=False)
    split = split_rows(
        raw_feature_matrix(table, adapter),
        labels,
        protocol=protocol,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        seed=seed,
        groups=groups,
    )
    train_rows, val_rows, test_rows = (
        table.take(idx) for idx in (split.train, split.val, split.test)
    )
    preprocessor = Preprocessor.fit(train_rows, adapter)
    X_train = preprocessor.transform(train_rows)
    X_val = preprocessor.transform(val_rows)
    X_test = preprocessor.transform(test_rows)
    y_train, y_val, y_test = labels[split.train], labels[split.val], labels[split.test]

    # Balance the training part only; snap synthetic rows onto valid values.
    X_bal, y_bal, sampling = balance(
        X_train, y_train, settings.sampling.build(seed), classes
    )
    if sampling.synthetic_rows:
        preprocessor.snap(X_bal[-sampling.synthetic_rows :])
    # A small split (honest protocol on repetitive data) is repeated so each epoch
    # still takes enough optimiser steps.
    X_epoch, y_epoch = X_bal, y_bal
    if 0 < len(y_bal) < settings.min_rows_per_epoch:
        reps = -(-settings.min_rows_per_epoch // len(y_bal))
        X_epoch, y_epoch = np.tile(X_bal, (reps, 1)), np.tile(y_bal, reps)
    # The split keeps the input's row order, which for a dataset stored one class per
    # file is class by class, and SMOTE appends its rows class by class. Shuffled once
    # (seeded), every batch and every worker's shard mixes the classes: batch norms
    # trained on single-class batches normalise unlike their running statistics, and
    # the evaluated model then misses whole attack classes.
    order = np.random.default_rng(seed).permutation(len(y_epoch))
    X_epoch, y_epoch = X_epoch[order], y_epoch[order]

    # Train on Ray Train.
    history, best_state, epochs_run = _fit(
        X_epoch,
        y_epoch,
        X_val,
        y_val,
        settings.model_copy(update={"seed": seed}),
        preprocessor,
        len(classes),
        output_uri,
        run_name,
        storage,
    )

    # Evaluate on the test split with the best epoch's weights, scored as batch and
    # online scoring will score them (`for_inference`), latency included.
    model = HybridIDS(preprocessor.num_features, len(classes), settings.model.build())
    model.load_state_dict(best_state)
    model = for_inference(model)
    proba = predict_proba(model, X_test)
    negative = adapter.negative_class[task.name]
    metrics = classification_metrics(
        y_test, proba.argmax(axis=1), proba, classes, negative
    )
    metrics["latency_us_per_row"] = latency_us_per_row(
        lambda b: predict_proba(model, b), X_test
    )
    baseline = None
    if settings.baseline:
        from iids.baseline import fit_baseline

        baseline = fit_baseline(
            X_bal,
            y_bal,
            X_test,
            y_test,
            classes,
            negative,
            seed,
            max_iter=settings.baseline_max_iter,
        )
    logger.info(
        "%s protocol, seed %d: test macro-F1 %.4f, accuracy %.4f (baseline %s)",
        protocol,
        seed,
        metrics["macro_f1"],
        metrics["accuracy"],
        f"{baseline['macro_f1']:.4f}" if baseline else "n/a",
    )
    return _Experiment(
        protocol,
        seed,
        split,
        preprocessor,
        sampling,
        history,
        best_state,
        epochs_run,
        len(y_bal),
        len(y_epoch),
        metrics,
        baseline,
        test_rows,
    )


def train(
    data_uri: str,
    output_uri: str,
    settings: TrainSettings,
    *,
    storage: Storage | None = None,
    splits_uri: str | None = None,
    run_name: str | None = None,
) -> TrainOutcome:
    """Train the hybrid model on an ingested dataset and write a model bundle.

    With `settings.compare_protocols`, a second model is trained and tested under the
    other protocol on the same data, and the report carries both under `protocols`;
    the bundle holds the model of `settings.protocol`.

    Args:
        data_uri: an ingested dataset (`iids ingest` output).
        output_uri: bundles go to `output_uri/<version>/`; Ray Train's run state to
            `output_uri/_runs/<run name>/`.
        settings: the resolved training settings.
        storage: where everything lives.
        splits_uri: when set, the test split's raw rows are written there as Parquet.
        run_name: Ray Train run name; rerunning with the same name resumes that run.

    Returns:
        The bundle URI, the report, and where the test split was written.
    """
    storage = storage or Storage()
    version = new_version()
    run_name = run_name or f"train-{version}"
    adapter, task, table, labels = load_labelled(data_uri, settings, storage)
    classes = list(task.classes)

    # The bundle's model, then the other protocol for comparison.
    main = run_protocol(
        table,
        labels,
        adapter,
        task,
        settings,
        protocol=settings.protocol,
        seed=settings.seed,
        output_uri=output_uri,
        run_name=run_name,
        storage=storage,
    )
    protocols = {main.protocol: main.summary(table.num_rows)}
    if settings.compare_protocols:
        for other in PROTOCOLS:
            if other != main.protocol:
                experiment = run_protocol(
                    table,
                    labels,
                    adapter,
                    task,
                    settings,
                    protocol=other,
                    seed=settings.seed,
                    output_uri=output_uri,
                    run_name=f"{run_name}-{other}",
                    storage=storage,
                )
                protocols[other] = experiment.summary(table.num_rows)

    best = max(main.history, key=lambda h: h["val_macro_f1"])
    report = {
        "dataset": adapter.name,
        "task": task.name,
        "classes": classes,
        **main.summary(table.num_rows),
        "model_bundle": join(output_uri, version),
        "model_version": version,
        "protocols": protocols,
        "training": {
            "epochs_run": main.epochs_run,
            "epochs_max": settings.epochs,
            "best_epoch": best["epoch"],
            "best_val_macro_f1": best["val_macro_f1"],
            "num_workers": settings.num_workers,
            "batch_size": settings.batch_size,
            "rows_per_epoch": main.rows_per_epoch,
            "sampling": settings.sampling.model_dump(),
            "history": main.history,
            "run_name": run_name,
        },
    }

    # Save the bundle with its report and plots.
    files = {
        "report.json": json.dumps(report, indent=2).encode(),
        "report.md": report_markdown(report).encode(),
        "confusion_matrix.png": confusion_png(
            main.metrics["confusion_matrix"],
            classes,
            f"{adapter.name} / {task.name}: test split ({main.protocol})",
        ),
        "training_curves.png": curves_png(main.history),
        "class_counts.png": class_counts_png(main.sampling.before, main.sampling.after),
    }
    bundle_uri = save_bundle(
        output_uri,
        version,
        state_dict=main.best_state,
        model_config=settings.model.build(),
        num_features=main.preprocessor.num_features,
        preprocessor=main.preprocessor,
        adapter=adapter,
        task=task,
        config=settings.model_dump(mode="json"),
        extra_files=files,
        storage=storage,
    )

    test_uri = None
    if splits_uri:
        test_uri = join(splits_uri, "test")
        _write_split(main.test_rows, test_uri, storage)
    return TrainOutcome(bundle_uri, report, test_uri)


def _check_ingested_as(uri: str, dataset: str, storage: Storage) -> None:
    """Refuse a dataset that was ingested with another adapter (per its manifest)."""
    from iids.ingest import MANIFEST

    if not storage.exists(join(uri, MANIFEST)):
        return  # day-partitioned stores keep one manifest per day
    ingested = storage.read_json(join(uri, MANIFEST)).get("dataset")
    if ingested and ingested != dataset:
        raise ValueError(
            f"{uri} was ingested as dataset {ingested!r}, but training was asked for "
            f"{dataset!r}; pass --dataset {ingested} (or a config with that dataset)"
        )


def _load(uri: str, storage: Storage, columns: list[str]) -> pa.Table:
    """All rows of an ingested dataset, as one Arrow table on the driver."""
    import ray

    # TODO(iids): splitting and deduplication happen on the driver, so the dataset must
    # fit in its memory (1.4 M CICIoV2024 rows take about 100 MB); a distributed
    # group-by would lift that.
    ds = read_dataset(uri, storage, columns=columns)
    tables = ray.get(ds.to_arrow_refs())
    return pa.concat_tables(
        [t.select(columns) for t in tables if t.num_rows]
    ).combine_chunks()


def _write_split(rows: pa.Table, uri: str, storage: Storage) -> None:
    """Write one split's raw rows as a Parquet dataset (published whole)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(uri)
    staging = f"{path}.staging"
    fs.create_dir(staging, recursive=True)
    pq.write_table(rows, f"{staging}/part-0000.parquet", filesystem=fs)
    storage.move_dir(("s3://" + staging) if uri.startswith("s3://") else staging, uri)


# -- Ray Train ------------------------------------------------------------------------


def _tensor_dataset(X: np.ndarray, y: np.ndarray):
    """A Ray Dataset with a tensor column `x` (F floats) and an int column `y`."""
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    table = pa.table({"x": ArrowTensorArray.from_numpy(X.astype(np.float32)), "y": y})
    return ray.data.from_arrow(table)


def check_capacity(settings: TrainSettings) -> None:
    """Fail fast when the cluster cannot hold the requested workers.

    Raises:
        RuntimeError: what was asked and what the cluster has.
    """
    import ray

    total = ray.cluster_resources()
    need_cpu = settings.num_workers * settings.cpus_per_worker
    need_gpu = settings.num_workers if settings.use_gpu else 0
    have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if need_cpu > have_cpu or need_gpu > have_gpu:
        # TODO(iids): an autoscaling cluster could grow to fit; this check only sees the
        # nodes that are up now.
        raise RuntimeError(
            f"training asks for {settings.num_workers} worker(s) x "
            f"{settings.cpus_per_worker} CPU{' + 1 GPU' if settings.use_gpu else ''} "
            f"= {need_cpu} CPU, {need_gpu} GPU; the cluster has {have_cpu:g} CPU, "
            f"{have_gpu:g} GPU. Lower num_workers / cpus_per_worker or add nodes."
        )


def _fit(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    preprocessor: Preprocessor,
    num_classes: int,
    output_uri: str,
    run_name: str,
    storage: Storage,
) -> tuple[list[dict], dict, int]:
    """Run the TorchTrainer; return the history, the best weights and epochs run."""
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    check_capacity(settings)
    fs, runs_path = storage.filesystem(join(output_uri, "_runs"))
    fs.create_dir(runs_path, recursive=True)
    loop_config = {
        "settings": settings.model_dump(mode="json"),
        "num_features": preprocessor.num_features,
        "num_classes": num_classes,
        "preprocessing": preprocessor.to_dict(),
        "rows_per_worker": len(y_train) // settings.num_workers,
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=settings.num_workers,
            use_gpu=settings.use_gpu,
            resources_per_worker={"CPU": settings.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=runs_path,
            storage_filesystem=fs,
            failure_config=FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={
            "train": _tensor_dataset(X_train, y_train),
            "val": _tensor_dataset(X_val, y_val),
        },
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, _STATE_FILE), weights_only=True)
    return state["history"], state["best_model"], state["epoch"]


def _train_loop(config: dict) -> None:
    """One Ray Train worker: train, validate, checkpoint, every epoch."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from ray import train
    from ray.train.torch import get_device, prepare_model

    from iids.config import configure_logging

    configure_logging()
    settings = TrainSettings(**config["settings"])
    torch.set_num_threads(settings.threads_per_worker)
    torch.manual_seed(settings.seed)
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = get_device()

    model = HybridIDS(
        config["num_features"], config["num_classes"], settings.model.build()
    )
    model = prepare_model(model)
    plain = model.module if hasattr(model, "module") else model
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs
    )

    # Resume from the last reported checkpoint, if this run has one.
    state: dict[str, Any] = {"epoch": 0, "best_f1": -1.0, "stale": 0, "history": []}
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            saved = torch.load(os.path.join(directory, _STATE_FILE), weights_only=True)
        plain.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {k: saved[k] for k in ("epoch", "best_f1", "stale", "history")}
        state["best_model"] = saved["best_model"]
        if rank == 0:
            logger.info("resuming from the checkpoint after epoch %d", state["epoch"])

    train_shard = train.get_dataset_shard("train")
    val_shard = train.get_dataset_shard("val")
    per_worker = settings.per_worker_batch()
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if state["stale"] >= settings.patience:
            break
        started = time.perf_counter()
        model.train()
        totals = torch.zeros(2, dtype=torch.float64)  # loss sum, rows
        last_log = started
        for batch in train_shard.iter_torch_batches(
            batch_size=per_worker,
            dtypes={"x": torch.float32, "y": torch.int64},
            device=device,
            local_shuffle_buffer_size=per_worker * 16,
            local_shuffle_seed=settings.seed + epoch,
        ):
            with torch.autocast(
                device_type=device.type,
                dtype=torch.bfloat16,
                enabled=settings.mixed_precision,
            ):
                logits = model(batch["x"])
            loss = F.cross_entropy(logits.float(), batch["y"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += torch.tensor([loss.item() * len(batch["y"]), len(batch["y"])])
            if rank == 0 and time.perf_counter() - last_log > 15:
                last_log = time.perf_counter()
                logger.info(
                    "epoch %d: %.0f%% of %d rows, loss %.4f",
                    epoch,
                    100 * totals[1].item() / max(config["rows_per_worker"], 1),
                    config["rows_per_worker"] * world,
                    totals[0].item() / max(totals[1].item(), 1),
                )
        scheduler.step()
        train_seconds = time.perf_counter() - started

        # Validate on every worker's shard; sum confusion counts across workers.
        cm, val_totals = _validate(
            model, val_shard, config["num_classes"], per_worker, device
        )
        if world > 1:
            for tensor in (totals, cm, val_totals):
                dist.all_reduce(tensor)
        f1 = macro_f1_from_confusion(cm.numpy())
        record = {
            "epoch": epoch,
            "train_loss": totals[0].item() / max(totals[1].item(), 1),
            "val_loss": val_totals[0].item() / max(val_totals[1].item(), 1),
            "val_macro_f1": f1,
            "samples_per_s": totals[1].item() / train_seconds,
            "seconds": time.perf_counter() - started,
        }
        state["history"].append(record)
        if f1 > state["best_f1"] + 1e-6:
            state["best_f1"], state["stale"] = f1, 0
            state["best_model"] = {
                k: v.detach().cpu().clone() for k, v in plain.state_dict().items()
            }
        else:
            state["stale"] += 1
        state["epoch"] = epoch

        # Checkpoint (rank 0 writes it; every rank reports).
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if rank == 0:
                torch.save(
                    {
                        **state,
                        "model": plain.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "preprocessing": json.dumps(config["preprocessing"]),
                    },
                    os.path.join(directory, _STATE_FILE),
                )
                checkpoint = train.Checkpoint.from_directory(directory)
                logger.info(
                    "epoch %d/%d: train loss %.4f, val loss %.4f, val macro-F1 %.4f, "
                    "%.0f samples/s, %.0f s",
                    epoch,
                    settings.epochs,
                    record["train_loss"],
                    record["val_loss"],
                    f1,
                    record["samples_per_s"],
                    record["seconds"],
                )
            train.report({k: v for k, v in record.items()}, checkpoint=checkpoint)


def _validate(model, shard, num_classes: int, batch_size: int, device):
    """Confusion counts (C, C) and (loss sum, rows) of a validation shard."""
    import torch
    import torch.nn.functional as F

    model.eval()
    cm = torch.zeros(num_classes * num_classes, dtype=torch.float64)
    totals = torch.zeros(2, dtype=torch.float64)
    with torch.inference_mode():
        for batch in shard.iter_torch_batches(
            batch_size=batch_size * 4,
            dtypes={"x": torch.float32, "y": torch.int64},
            device=device,
        ):
            logits = model(batch["x"])
            y = batch["y"]
            totals += torch.tensor(
                [F.cross_entropy(logits, y, reduction="sum").item(), len(y)],
                dtype=torch.float64,
            )
            pairs = y * num_classes + logits.argmax(dim=1)
            cm += torch.bincount(
                pairs.cpu(), minlength=num_classes * num_classes
            ).double()
    return cm.view(num_classes, num_classes), totals


_SCALARS = ("accuracy", "macro_f1", "weighted_f1", "fpr", "loss", "latency_us_per_row")


def evaluate_protocols(
    data_uri: str,
    settings: TrainSettings,
    protocols: list[str],
    seeds: int,
    *,
    output_uri: str,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Retrain and test under each protocol with `seeds` seeds; mean ± std per metric.

    Args:
        data_uri: an ingested, labelled dataset.
        settings: the training settings (a bundle's `config.json`, usually).
        protocols: `paper` and/or `honest`.
        seeds: seeds `settings.seed`, `settings.seed + 1`, ...
        output_uri: where the runs' Ray Train state goes.

    Returns:
        `{protocol: {"runs": [...], "mean": {...}, "std": {...}}}`, each metric also for
        the baseline (`baseline_macro_f1`, ...).
    """
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        raise ValueError(f"protocols must be among {list(PROTOCOLS)}, got {protocols}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    storage = storage or Storage()
    adapter, task, table, labels = load_labelled(data_uri, settings, storage)
    stamp = new_version()
    results: dict[str, Any] = {}
    for protocol in protocols:
        runs = []
        for seed in range(settings.seed, settings.seed + seeds):
            experiment = run_protocol(
                table,
                labels,
                adapter,
                task,
                settings,
                protocol=protocol,
                seed=seed,
                output_uri=output_uri,
                run_name=f"evaluate-{stamp}-{protocol}-{seed}",
                storage=storage,
            )
            runs.append(experiment.summary(table.num_rows))
        flat = [_scalars(run) for run in runs]
        keys = [k for k in flat[0] if all(f[k] is not None for f in flat)]
        results[protocol] = {
            "runs": runs,
            "mean": {k: float(np.mean([f[k] for f in flat])) for k in keys},
            "std": {k: float(np.std([f[k] for f in flat])) for k in keys},
        }
    return {
        "dataset": adapter.name,
        "task": task.name,
        "seeds": seeds,
        "protocols": results,
    }


def _scalars(run: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of one run, the baseline's prefixed with `baseline_`."""
    out: dict[str, float | None] = {k: run.get(k) for k in _SCALARS}
    for k in _SCALARS:
        out[f"baseline_{k}"] = (run.get("baseline") or {}).get(k)
    out["train_test_overlap"] = run["rows"]["train_test_overlap"]
    return out
