"""Throughput of iids on this machine, as ratios: `make bench`.

One run measures, on one machine:

1. the machine's fp32 matrix-multiply rate (torch, one process, default threads) and the
   model's FLOPs per row, counted analytically, which give a ceiling in rows/s;
2. the bare model (what the scoring core runs: `iids.model.for_inference`, eval,
   `torch.inference_mode`, batch 4096, one process) against that ceiling, for CICIoV2024
   and Edge-IIoTset (the native pass, and where its time goes), and other sizes, thread
   counts, instruction sets, the torch rewrite and bf16 autocast beside it;
3. batch scoring end to end (`iids.batch.score_dataset`: Parquet in, Ray Data actor pool,
   Parquet out) against the bare model, over a grid of actors, threads and batch sizes;
4. training samples/s per epoch on Ray Train with 1 and 2 workers;
5. distributed SMOTE (one Ray task per class) against single-process imbalanced-learn on
   an Edge-IIoTset-sized training split, time and peak memory;
6. the gradient-boosted-tree baseline's predict rows/s on the bare model's rows.

Data: the real CICIoV2024 decimal files under `$IIDS_DATA_DIR/ciciov2024/decimal` when
present (else `iids.synth`), Edge-IIoTset from `iids.synth`. Model sizes and training batch
sizes come from `jobs/configs/<dataset>.yaml`. Models are untrained: speed does not depend
on the weights.

    python benchmarks/bench.py           # the full run (about 16 minutes on 2 cores)
    python benchmarks/bench.py --quick   # small sizes, to check the script (2-3 minutes)

Writes benchmarks/results.json (other keys, such as `serve`, are kept) and
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "benchmarks" / "results.json"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
CONFIGS = ROOT / "jobs" / "configs"
DATASETS = ("ciciov2024", "edge-iiotset")
BATCH_SIZE = 4096
TARGETS = {
    "model_ceiling_ratio": 0.5,
    "batch_rows_per_s": {"ciciov2024": 20_000, "edge-iiotset": 10_000},
    "scoring_ratio_to_model": 0.8,
}

logger = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (full or quick)."""

    matmul_n: int
    matmul_reps: int
    cic_synth_rows: int  # only when the real files are absent
    edge_rows: int  # synthesised and ingested
    max_score_rows: dict[str, int]
    score_s: float  # scoring inputs are sized to about this many seconds of model time
    bare_rows: int
    bare_s: float  # each bare-model rep runs at least this long
    bare_reps: int
    baseline_fit_rows: int
    train_epoch_s: float  # rows per epoch are sized so an epoch takes about this
    train_max_rows: int
    train_epochs: int
    smote_scale: float  # share of the published Edge-IIoTset class counts
    # (actors, threads per actor, batch size) on the 2-CPU Ray.
    grid: dict[str, tuple[tuple[int, int, int], ...]]
    force_synthetic_cic: bool


FULL = Plan(
    matmul_n=4096,
    matmul_reps=7,
    cic_synth_rows=1_000_000,
    edge_rows=200_000,
    # A night sized to about `score_s` of one-thread model time, so that the fixed
    # cost of a call (starting actors, planning the read) weighs as on a real night.
    max_score_rows={"ciciov2024": 10_000_000, "edge-iiotset": 10_000_000},
    score_s=90.0,
    bare_rows=16_384,
    bare_s=4.0,
    bare_reps=3,
    baseline_fit_rows=20_000,
    train_epoch_s=10.0,
    train_max_rows=60_000,
    train_epochs=2,
    smote_scale=1.0,
    grid={
        "ciciov2024": ((1, 2, 4096), (2, 1, 4096), (2, 1, 16384)),
        "edge-iiotset": ((1, 2, 4096), (2, 1, 4096), (2, 1, 16384)),
    },
    force_synthetic_cic=False,
)
QUICK = Plan(
    matmul_n=2048,
    matmul_reps=3,
    cic_synth_rows=60_000,
    edge_rows=20_000,
    max_score_rows={"ciciov2024": 50_000, "edge-iiotset": 20_000},
    score_s=4.0,
    bare_rows=8_192,
    bare_s=1.0,
    bare_reps=2,
    baseline_fit_rows=5_000,
    train_epoch_s=3.0,
    train_max_rows=20_000,
    train_epochs=2,
    smote_scale=0.05,
    grid={"ciciov2024": ((2, 1, 4096),), "edge-iiotset": ((2, 1, 4096),)},
    force_synthetic_cic=True,
)


@dataclass
class _Data:
    """One dataset, ingested and prepared for every section."""

    name: str
    source: str
    uri: str
    adapter: Any
    task: Any
    table: pa.Table
    labels: np.ndarray
    preprocessor: Any
    settings: Any  # TrainSettings from jobs/configs/<name>.yaml
    model: Any  # an untrained HybridIDS in eval mode
    bundle_uri: str = ""


# -- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    import imblearn
    import ray
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "sklearn": sklearn.__version__,
        "imblearn": imblearn.__version__,
    }


def measure_machine(plan: Plan) -> dict[str, Any]:
    """fp32 matmul GFLOP/s: one process, torch's default threads and 1 thread, medians."""
    import torch

    def gflops(n: int) -> float:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            torch.mm(a, b)
        seconds = []
        for _ in range(plan.matmul_reps):
            started = time.perf_counter()
            torch.mm(a, b)
            seconds.append(time.perf_counter() - started)
        return 2 * n**3 / statistics.median(seconds) / 1e9

    n, threads = plan.matmul_n, torch.get_num_threads()
    rate = gflops(n)
    torch.set_num_threads(1)
    try:
        rate_1_thread = gflops(n)
    finally:
        torch.set_num_threads(threads)
    logger.info(
        "matmul %dx%d fp32: %.1f GFLOP/s (%d threads), %.1f (1 thread)",
        n,
        n,
        rate,
        threads,
        rate_1_thread,
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "torch_threads": threads,
        "matmul_n": n,
        "matmul_gflops": round(rate, 2),
        "matmul_gflops_1_thread": round(rate_1_thread, 2),
        "versions": _versions(),
    }


# -- model FLOPs -----------------------------------------------------------------------


def count_flops(model) -> dict[str, int]:
    """FLOPs per row of a HybridIDS forward pass, by part (1 multiply-add = 2 FLOPs).

    Counted: convolutions (stem, blocks, strided skips), the GRU (3 gates x (input +
    hidden) matmuls per step per direction), attention (in/out projections, scores,
    weighted sum) and the linear head. Not counted: batch norm, activations, softmax,
    layer norm, pooling, GRU gate nonlinearities (elementwise, small next to these).
    """
    cfg = model.config
    c, k = cfg.channels, cfg.kernel_size
    length = model.num_features
    conv = 2 * 1 * c * k * length  # stem
    for stride in cfg.strides:
        length = (length - 1) // stride + 1
        conv += 2 * (2 * c * c * k * length)  # conv1 (strided) and conv2
        if stride != 1:
            conv += 2 * c * c * length  # 1x1 projection of the skip
    assert length == model.sequence_length()
    hidden, width_in, gru = cfg.gru_hidden, c, 0
    for _ in range(cfg.gru_layers):
        gru += 2 * length * 3 * 2 * (width_in * hidden + hidden * hidden)
        width_in = 2 * hidden
    width = 2 * hidden
    attention = (
        2 * length * width * 3 * width  # q, k, v projections
        + 2 * 2 * length * length * width  # scores and weighted sum
        + 2 * length * width * width  # output projection
    )
    head = 2 * (2 * width * width + width * model.num_classes)
    return {
        "conv": conv,
        "gru": gru,
        "attention": attention,
        "head": head,
        "total": conv + gru + attention + head,
    }


def torch_counted_flops(model) -> dict[str, int]:
    """FLOPs per row that torch's FlopCounterMode sees, without and with autograd.

    A check on `count_flops`: the two agree when torch sees every matmul.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(64, model.num_features)
    counts = {}
    for key, grad in (("no_grad", False), ("autograd", True)):
        counter = FlopCounterMode(display=False)
        with torch.set_grad_enabled(grad), counter:
            model(x)
        counts[key] = counter.get_total_flops() // 64
    return counts


# -- data ------------------------------------------------------------------------------


def _model_settings(name: str, batch_size: int | None = None):
    """TrainSettings with the model and batch size of jobs/configs/<name>.yaml."""
    from iids.config import ModelSettings, TrainSettings

    path = CONFIGS / f"{name}.yaml"
    config = yaml.safe_load(path.read_text()) if path.exists() else {}
    return TrainSettings(
        dataset=name,
        model=ModelSettings(**config.get("model", {})),
        batch_size=batch_size or config.get("batch_size", 1024),
        learning_rate=config.get("learning_rate", 3e-3),
        baseline=False,
    )


def prepare(name: str, plan: Plan, work: Path) -> _Data:
    """Ingest the dataset (real or synthetic), fit preprocessing, build a bundle."""
    import torch

    from iids.bundle import new_version, save_bundle
    from iids.config import data_dir
    from iids.datasets import get_adapter
    from iids.ingest import ingest
    from iids.model import HybridIDS
    from iids.preprocess import Preprocessor
    from iids.synth import synth
    from iids.train import encode_labels

    adapter = get_adapter(name)
    real = (ROOT / data_dir() / "ciciov2024" / "decimal").resolve()
    if name == "ciciov2024" and real.is_dir() and not plan.force_synthetic_cic:
        inputs, source = [str(real)], f"real CICIoV2024 decimal files ({real})"
    else:
        rows = plan.cic_synth_rows if name == "ciciov2024" else plan.edge_rows
        started = time.perf_counter()
        sidecar = synth(name, rows, 0, work / "raw")
        logger.info(
            "%s: synthesised %d rows in %.0f s",
            name,
            rows,
            time.perf_counter() - started,
        )
        inputs, source = [sidecar["path"]], f"iids.synth {name}, {rows:,} rows, seed 0"

    uri = str(work / "ingested" / name)
    started = time.perf_counter()
    manifest = ingest(adapter, inputs, uri)
    table = pads.dataset(uri, format="parquet", partitioning="hive").to_table()
    table = table.drop_columns(
        [c for c in table.column_names if c not in _raw_columns(adapter)]
    )
    logger.info(
        "%s: ingested %d rows (%d quarantined) in %.0f s",
        name,
        manifest["rows_written"],
        manifest["rows_quarantined"],
        time.perf_counter() - started,
    )
    task = adapter.task(None)
    labels = encode_labels(table, task)
    preprocessor = Preprocessor.fit(table, adapter)
    settings = _model_settings(name)
    torch.manual_seed(0)
    model = HybridIDS(
        preprocessor.num_features, len(task.classes), settings.model.build()
    ).eval()
    data = _Data(
        name,
        source,
        uri,
        adapter,
        task,
        table,
        labels,
        preprocessor,
        settings,
        model,
    )
    data.bundle_uri = save_bundle(
        str(work / "bundles" / name),
        new_version(),
        state_dict=model.state_dict(),
        model_config=model.config,
        num_features=preprocessor.num_features,
        preprocessor=preprocessor,
        adapter=adapter,
        task=task,
        config={"benchmark": "bench", **settings.model_dump(mode="json")},
    )
    logger.info(
        "%s: %d features, %d classes, model %s",
        name,
        preprocessor.num_features,
        len(task.classes),
        model.config,
    )
    return data


def _raw_columns(adapter) -> set[str]:
    """The raw schema's columns plus ingest's row keys (not the hive partition column)."""
    from iids.ingest import KEY_COLUMNS

    return {*adapter.arrow_schema().names, *KEY_COLUMNS}


def _sample(data: _Data, rows: int, seed: int) -> np.ndarray:
    """Row indices of a seeded sample (with replacement only when the table is short)."""
    rng = np.random.default_rng(seed)
    n = data.table.num_rows
    return rng.choice(n, size=rows, replace=rows > n)


# -- bare model and baseline -----------------------------------------------------------


def measure_model(data: _Data, plan: Plan, machine: dict[str, Any]) -> dict[str, Any]:
    """Bare-model rows/s (eval, inference_mode, batch 4096, one process) vs the ceiling."""
    from iids import native
    from iids.model import for_inference
    from iids.scoring import keep_allocations_on_the_heap

    X = data.preprocessor.transform(data.table.take(_sample(data, plan.bare_rows, 1)))
    # What the scoring core runs: `Scorer` tunes malloc and scores with
    # `for_inference(model)`.
    keep_allocations_on_the_heap()
    model = for_inference(data.model)
    backend = "native" if isinstance(model, native.NativeHybridIDS) else "torch"
    rows_per_s = _bare_rows_per_s(model, X, plan)
    stages = {backend: _stage_times(model, X, plan, machine)}
    if backend == "native":  # where the torch rewrite's time went, for comparison
        stages["torch"] = _stage_times(
            for_inference(data.model, "torch"), X, plan, machine
        )
    flops = count_flops(data.model)
    ceiling = machine["matmul_gflops"] * 1e9 / flops["total"]
    logger.info(
        "%s: bare model (%s) %.0f rows/s; %.2f MFLOP/row; ceiling %.0f rows/s (%.1f%%)",
        data.name,
        backend,
        rows_per_s,
        flops["total"] / 1e6,
        ceiling,
        100 * rows_per_s / ceiling,
    )
    return {
        "num_features": data.preprocessor.num_features,
        "num_classes": len(data.task.classes),
        "sequence_length": data.model.sequence_length(),
        "config": data.model.config.to_dict(),
        "parameters": sum(p.numel() for p in data.model.parameters()),
        "flops_per_row": flops["total"],
        "flops_by_part": flops,
        "flop_counter_mode_per_row": torch_counted_flops(data.model),
        "batch_size": BATCH_SIZE,
        "backend": backend,
        "isa": native.isa() if backend == "native" else None,
        "rows_per_s": round(rows_per_s, 1),
        "ceiling_rows_per_s": round(ceiling, 1),
        "ceiling_ratio": round(rows_per_s / ceiling, 4),
        "rows_measured": len(X),
        "stages": stages,
        "variants": _variants(data, X, plan, machine),
    }


def _bare_rows_per_s(model, X: np.ndarray, plan: Plan, bf16: bool = False) -> float:
    """Median rows/s of `predict_proba`, batch 4096, over reps of at least `bare_s`
    (under bf16 autocast with `bf16`)."""
    from iids.scoring import predict_proba

    if bf16:
        model = _Bf16(model)
    predict_proba(model, X[: 2 * BATCH_SIZE], BATCH_SIZE)  # warm-up
    rates = []
    for _ in range(plan.bare_reps):
        rows, started = 0, time.perf_counter()
        while rows == 0 or time.perf_counter() - started < plan.bare_s:
            predict_proba(model, X, BATCH_SIZE)
            rows += len(X)
        rates.append(rows / (time.perf_counter() - started))
    return statistics.median(rates)


def _stage_times(
    model, X: np.ndarray, plan: Plan, machine: dict[str, Any]
) -> dict[str, Any]:
    """Where a forward pass spends its time, by the parts `count_flops` counts.

    The native pass times its own stages (`NativeHybridIDS.stage_seconds`, each
    tile's stages timed inside the C code) over all rows of `X` in this thread, once
    per rep; the torch rewrite runs each of `model.stages()` alone on one micro-batch
    with the same threads, the stages in turns (one round runs each for `bare_s / 8`
    seconds). Medians over `2 * bare_reps` rounds either way, so a slow stretch of
    the machine weighs on every stage alike. The native figures are one thread's,
    compared with the 1-thread matmul rate; the torch ones use torch's threads and
    their matmul rate.
    """
    import torch

    from iids.native import NativeHybridIDS

    flops = count_flops(model)
    seconds: dict[str, list[float]] = {}
    if isinstance(model, NativeHybridIDS):
        rows, rate = len(X), machine["matmul_gflops_1_thread"]
        for _ in range(2 * plan.bare_reps):
            for name, s in model.stage_seconds(X).items():
                seconds.setdefault(name, []).append(s)
    else:
        rows, rate = min(model.micro_batch, len(X)), machine["matmul_gflops"]
        with torch.inference_mode():
            inputs, h = [], torch.from_numpy(X[:rows])
            for _, stage in model.stages():
                inputs.append(h)
                h = stage(h)
            for _ in range(2 * plan.bare_reps):
                for (name, stage), h in zip(model.stages(), inputs, strict=True):
                    calls, started = 0, time.perf_counter()
                    while calls == 0 or time.perf_counter() - started < plan.bare_s / 8:
                        stage(h)
                        calls += 1
                    elapsed = (time.perf_counter() - started) / calls
                    seconds.setdefault(name, []).append(elapsed)
    us = {name: 1e6 * statistics.median(s) / rows for name, s in seconds.items()}
    total = sum(us.values())
    return {
        name: {
            "us_per_row": round(t, 3),
            "share": round(t / total, 4),
            "flops_per_row": flops[name],
            "gflops": round(flops[name] / t / 1e3, 2),
            "of_matmul_rate": round(flops[name] / t / 1e3 / rate, 4),
        }
        for name, t in us.items()
    }


def _Bf16(model):
    """The model under bf16 autocast, returning fp32 logits."""
    import torch

    class Bf16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.num_classes = model, model.num_classes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                return self.model(x).float()

    return Bf16()


# The model sizes each dataset used before the speed work; benchmarks/quality.py trains
# them beside the configured sizes to compare test macro-F1.
UNOPTIMISED = {
    "ciciov2024": {
        "channels": 32,
        "num_blocks": 2,
        "strides": (1, 1),
        "gru_hidden": 32,
        "num_heads": 4,
    },
    "edge-iiotset": {
        "channels": 64,
        "num_blocks": 3,
        "strides": (1, 2, 1),
        "gru_hidden": 64,
        "num_heads": 4,
    },
}


@dataclass(frozen=True)
class _Variant:
    """Another way to run the bare model, measured on the same rows."""

    sizes: dict[str, Any] | None = None  # None: the configured sizes
    threads: int | None = None  # None: torch's default
    backend: str = "auto"  # as `for_inference`'s
    isa: str | None = None  # the native pass's instruction set; None: the widest
    bf16: bool = False  # under bf16 autocast (the torch rewrite only)


_SAME = {
    "same model, 1 thread": _Variant(threads=1),
    "same model, native pass with AVX2": _Variant(isa="avx2"),
    "same model, native pass without SIMD extensions (SSE2 or NEON)": _Variant(
        isa="baseline"
    ),
    "same model, torch rewrite (`InferenceHybridIDS`)": _Variant(backend="torch"),
    "same model, torch rewrite, 1 thread": _Variant(backend="torch", threads=1),
    "same model, torch rewrite under bf16 autocast (GRU in fp32)": _Variant(
        backend="torch", bf16=True
    ),
}
# Other model sizes, thread counts, backends and bf16, measured bare only: what a
# change would buy.
VARIANTS = {
    "ciciov2024": {
        **_SAME,
        "strides (1, 2): GRU over 5 positions": _Variant({"strides": (1, 2)}),
        "strides (2, 2): GRU over 3 positions": _Variant({"strides": (2, 2)}),
    },
    "edge-iiotset": {
        **_SAME,
        "unoptimised sizes: channels 64, GRU 64, strides (1, 2, 1)": _Variant(
            UNOPTIMISED["edge-iiotset"]
        ),
    },
}


def _variants(
    data: _Data, X: np.ndarray, plan: Plan, machine: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Bare rows/s of other model sizes, thread counts or backends on the same rows;
    each against the matmul rate at its own thread count."""
    import torch

    from iids import native
    from iids.model import HybridConfig, HybridIDS, for_inference

    out = {}
    default_threads, default_isa = torch.get_num_threads(), native.isa()
    for label, variant in VARIANTS[data.name].items():
        config = (
            data.model.config
            if variant.sizes is None
            else HybridConfig(**variant.sizes)
        )
        try:
            if variant.isa is not None:
                native.select_isa(variant.isa)
        except (ValueError, RuntimeError) as err:
            logger.info("%s variant %s: skipped (%s)", data.name, label, err)
            continue
        model = for_inference(
            HybridIDS(X.shape[1], len(data.task.classes), config), variant.backend
        )
        torch.set_num_threads(variant.threads or default_threads)
        try:
            rows_per_s = _bare_rows_per_s(model, X, plan, variant.bf16)
        finally:
            torch.set_num_threads(default_threads)
            if default_isa is not None:
                native.select_isa(default_isa)
        flops = count_flops(model)["total"]
        gflops = machine[
            "matmul_gflops_1_thread" if variant.threads == 1 else "matmul_gflops"
        ]
        out[label] = {
            "config": config.to_dict(),
            "threads": variant.threads or default_threads,
            "backend": "native"
            if isinstance(model, native.NativeHybridIDS)
            else "torch",
            "isa": variant.isa,
            "bf16": variant.bf16,
            "flops_per_row": flops,
            "rows_per_s": round(rows_per_s, 1),
            "ceiling_ratio": round(rows_per_s * flops / (gflops * 1e9), 4),
        }
        logger.info(
            "%s variant %s: %.2f MFLOP/row, %.0f rows/s",
            data.name,
            label,
            flops / 1e6,
            rows_per_s,
        )
    return out


def measure_baseline(data: _Data, plan: Plan) -> dict[str, Any]:
    """The tree baseline's predict rows/s on the bare model's rows."""
    from iids.baseline import fit_baseline

    fit_idx = _sample(data, plan.baseline_fit_rows, 2)
    eval_idx = _sample(data, plan.bare_rows, 1)
    pre = data.preprocessor
    X_fit = pre.transform(data.table.take(fit_idx))
    X_eval = pre.transform(data.table.take(eval_idx))
    negative = data.adapter.negative_class[data.task.name]
    metrics = fit_baseline(
        X_fit,
        data.labels[fit_idx],
        X_eval,
        data.labels[eval_idx],
        list(data.task.classes),
        negative,
        seed=0,
    )
    return {
        "model": metrics["model"],
        "fit_rows": len(fit_idx),
        "fit_s": metrics["fit_s"],
        "rows_per_s": round(metrics["rows_per_s"], 1),
        "rows_measured": len(eval_idx),
    }


# -- batch scoring ---------------------------------------------------------------------


def _write_input(data: _Data, rows: int, path: Path, rows_per_file: int) -> None:
    """A shuffled sample of the ingested rows as Parquet files (a night's partition),
    drawn file by file so that a large night is never whole in memory."""
    path.mkdir(parents=True)
    index = _sample(data, rows, 3)
    keyed = rows > data.table.num_rows  # a sample with replacement repeats row keys
    for i, start in enumerate(range(0, rows, rows_per_file)):
        part = index[start : start + rows_per_file]
        table = data.table.take(part)
        if keyed:
            keys = np.arange(start, start + len(part)).astype(str)
            table = table.append_column("row_key", pa.array(keys))
        pq.write_table(table, path / f"part-{i:04d}.parquet")


def scoring_inputs(data: _Data, plan: Plan, work: Path, one_thread_rows_per_s: float):
    """The scoring input, sized to about `score_s` of one-thread model time, and a
    2,000-row input for the fixed overhead."""
    rows = int(one_thread_rows_per_s * plan.score_s) // 1000 * 1000
    rows = max(10_000, min(rows, plan.max_score_rows[data.name]))
    big, small = work / "score-in" / data.name, work / "score-in" / f"{data.name}-small"
    _write_input(data, rows, big, rows_per_file=-(-rows // 8))
    _write_input(data, 2_000, small, rows_per_file=2_000)
    return rows, big, small


def score_once(
    data: _Data, uri: Path, work: Path, actors: int, threads: int, batch: int
) -> float:
    """Wall seconds of one `score_dataset` call (its output is then deleted)."""
    from iids.batch import score_dataset

    out = work / "score-out" / data.name
    started = time.perf_counter()
    summary = score_dataset(
        data.bundle_uri,
        str(uri),
        str(out),
        num_actors=actors,
        threads_per_actor=threads,
        batch_size=batch,
    )
    seconds = time.perf_counter() - started
    assert summary["rows_scored"] == summary["rows_in"]
    shutil.rmtree(out)
    return seconds


def measure_scoring(
    data: _Data,
    grid: tuple[tuple[int, int, int], ...],
    rows: int,
    big: Path,
    work: Path,
    ray_cpus: int,
) -> list[dict[str, Any]]:
    """score_dataset end to end for each (actors, threads, batch) setting."""
    settings = []
    for actors, threads, batch in grid:
        seconds = score_once(data, big, work, actors, threads, batch)
        settings.append(
            {
                "ray_cpus": ray_cpus,
                "num_actors": actors,
                "threads_per_actor": threads,
                "batch_size": batch,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds, 1),
            }
        )
        logger.info(
            "%s: batch scoring %d rows, Ray %d CPUs, %d actor(s) x %d thread(s), "
            "batch %d: %.1f s, %.0f rows/s",
            data.name,
            rows,
            ray_cpus,
            actors,
            threads,
            batch,
            seconds,
            rows / seconds,
        )
    return settings


def scoring_summary(
    settings: list[dict[str, Any]],
    rows: int,
    overhead_s: float,
    bare_rows_per_s: float,
) -> dict[str, Any]:
    """The best setting on the 2-CPU Ray, its ratio to the bare model, every setting."""
    best = max(settings, key=lambda s: s["rows_per_s"])
    keys = ("ray_cpus", "num_actors", "threads_per_actor", "batch_size")
    return {
        "rows": rows,
        "rows_per_s": best["rows_per_s"],
        "ratio_to_model": round(best["rows_per_s"] / bare_rows_per_s, 4),
        "best": {k: best[k] for k in keys},
        "fixed_overhead_s": round(overhead_s, 2),
        "rows_per_s_excluding_overhead": round(
            rows / max(best["seconds"] - overhead_s, 1e-9), 1
        ),
        "settings": settings,
    }


# -- training --------------------------------------------------------------------------


def measure_training(
    data: _Data, plan: Plan, work: Path, bare_rows_per_s: float
) -> dict[str, Any]:
    """Samples/s per epoch on Ray Train with 1 worker (2 threads) and 2 (1 thread each)."""
    from iids.storage import Storage
    from iids.train import _fit

    # A training step costs about 3 forward passes; size an epoch to `train_epoch_s`.
    batch = data.settings.batch_size
    rows = int(bare_rows_per_s / 3 * plan.train_epoch_s) // batch * batch
    rows = max(4 * batch, min(rows, plan.train_max_rows))
    idx = _sample(data, rows + 4096, 4)
    X = data.preprocessor.transform(data.table.take(idx))
    y = data.labels[idx]
    out: dict[str, Any] = {"rows_per_epoch": rows, "batch_size": batch}
    configs = [(1, 2), (2, 1)]
    if data.name == "ciciov2024":
        configs.append((1, 1))  # separates "more threads" from "more workers"
    for workers, threads in configs:
        settings = data.settings.model_copy(
            update={
                "epochs": plan.train_epochs,
                "patience": plan.train_epochs + 1,
                "num_workers": workers,
                "cpus_per_worker": float(threads),
                "threads_per_worker": threads,
            }
        )
        started = time.perf_counter()
        history, _, _ = _fit(
            X[:rows],
            y[:rows],
            X[rows:],
            y[rows:],
            settings,
            data.preprocessor,
            len(data.task.classes),
            str(work / "train"),
            f"bench-{data.name}-{workers}w{threads}t",
            Storage(),
        )
        wall = time.perf_counter() - started
        per_epoch = [round(h["samples_per_s"], 1) for h in history]
        key = {
            (1, 2): "samples_per_s_1_worker",
            (2, 1): "samples_per_s_2_workers",
            (1, 1): "samples_per_s_1_worker_1_thread",
        }[(workers, threads)]
        out[key] = per_epoch[-1]
        out[f"{key}_by_epoch"] = per_epoch
        out[f"wall_s_{workers}w_{threads}t"] = round(wall, 1)
        logger.info(
            "%s: training with %d worker(s) x %d thread(s): %s samples/s per epoch "
            "(%.0f s with start-up)",
            data.name,
            workers,
            threads,
            per_epoch,
            wall,
        )
    out["scaling_2_over_1"] = round(
        out["samples_per_s_2_workers"] / out["samples_per_s_1_worker"], 3
    )
    return out


# -- SMOTE -----------------------------------------------------------------------------


def smote_split(data: _Data, scale: float, path: Path) -> dict[str, Any]:
    """An Edge-IIoTset-sized training split (70% of the published counts x scale).

    Rows of each class are drawn from the synthetic rows of that class, and the numeric
    columns get small noise so rows are distinct, as the deduplicated split is.
    """
    from iids.datasets.edge_iiotset import PUBLISHED_COUNTS

    rng = np.random.default_rng(5)
    classes = list(data.task.classes)
    parts_X, parts_y = [], []
    for code, name in enumerate(classes):
        want = max(int(0.7 * PUBLISHED_COUNTS[name] * scale), 8)
        own = np.flatnonzero(data.labels == code)
        idx = rng.choice(own, size=want, replace=True)
        X = data.preprocessor.transform(data.table.take(idx))
        numeric = len(data.preprocessor.numeric)
        X[:, :numeric] += rng.normal(0, 0.01, (want, numeric)).astype(np.float32)
        parts_X.append(X)
        parts_y.append(np.full(want, code, dtype=np.int64))
    X, y = np.concatenate(parts_X), np.concatenate(parts_y)
    np.save(path / "X.npy", X)
    np.save(path / "y.npy", y)
    (path / "classes.json").write_text(json.dumps(classes))
    return {"rows": len(y), "features": X.shape[1], "mb": round(X.nbytes / 2**20, 1)}


def measure_smote(data: _Data, plan: Plan, work: Path) -> dict[str, Any]:
    """Each variant in its own subprocess: balance() time and peak memory."""
    path = work / "smote"
    path.mkdir()
    split = smote_split(data, plan.smote_scale, path)
    sampling = data.settings.model_copy(
        update={"sampling": _edge_sampling()}
    ).sampling.build(0)
    logger.info(
        "SMOTE split: %d rows x %d features (%.0f MB); sampling %s",
        split["rows"],
        split["features"],
        split["mb"],
        sampling,
    )
    out: dict[str, Any] = {"split": split, "sampling": _edge_sampling().model_dump()}
    for variant in ("single_process", "distributed"):
        child = subprocess.run(
            [sys.executable, __file__, "--smote-child", str(path), variant],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(
                f"SMOTE child ({variant}) failed:\n{child.stderr[-4000:]}"
            )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        out[f"{variant}_s"] = result["seconds"]
        out[f"{variant}_peak_mb"] = result["peak_mb"]
        out[f"{variant}_detail"] = result
        logger.info(
            "SMOTE %s: %.1f s, peak %.0f MB (PSS over the process tree; %.0f MB "
            "before balancing)",
            variant,
            result["seconds"],
            result["peak_mb"],
            result["before_mb"],
        )
    out["speedup"] = round(out["single_process_s"] / out["distributed_s"], 3)
    return out


def _edge_sampling():
    """The sampling settings of jobs/configs/edge-iiotset.yaml."""
    from iids.config import SamplingSettings

    config = yaml.safe_load((CONFIGS / "edge-iiotset.yaml").read_text())
    return SamplingSettings(**config.get("sampling", {}))


def _tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            pass
    return total_kb / 1024


def smote_child(path: str, variant: str) -> None:
    """Run one SMOTE variant; print its time and peak memory as JSON."""
    from iids.smote import balance

    X = np.load(Path(path) / "X.npy")
    y = np.load(Path(path) / "y.npy")
    classes = json.loads((Path(path) / "classes.json").read_text())
    sampling = _edge_sampling().build(0)
    distributed = variant == "distributed"
    ray_start_s = 0.0
    if distributed:
        from iids.runtime import init_ray

        started = time.perf_counter()
        init_ray(None, num_cpus=2, object_store_memory=1 << 30)
        ray_start_s = time.perf_counter() - started

    # Sample the whole process tree's memory while balancing.
    me = os.getpid()
    before_mb = _tree_pss_mb(me)
    peak = [before_mb]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_pss_mb(me))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    X_res, _, report = balance(X, y, sampling, classes, distributed=distributed)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _tree_pss_mb(me))
    if distributed:
        import ray

        ray.shutdown()
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_mb": round(peak[0], 1),
                "before_mb": round(before_mb, 1),
                "ray_start_s": round(ray_start_s, 2),
                "rows_out": len(X_res),
                "synthetic_rows": report.synthetic_rows,
            }
        )
    )


# -- report ----------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met."""
    rows = []

    def add(target: str, measured: str, met: bool) -> None:
        rows.append({"target": target, "measured": measured, "met": met})

    for name in DATASETS:
        ratio = results["model"][name]["ceiling_ratio"]
        add(
            f"bare model >= 50% of ceiling ({name})",
            f"{100 * ratio:.1f}%",
            ratio >= TARGETS["model_ceiling_ratio"],
        )
    for name in DATASETS:
        rate = results["batch_scoring"][name]["rows_per_s"]
        want = TARGETS["batch_rows_per_s"][name]
        add(
            f"batch scoring >= {want:,} rows/s ({name})",
            f"{rate:,.0f} rows/s",
            rate >= want,
        )
    for name in DATASETS:
        ratio = results["batch_scoring"][name]["ratio_to_model"]
        add(
            f"nightly scoring >= 0.8 of the bare model's rate ({name})",
            f"{ratio:.2f}",
            ratio >= TARGETS["scoring_ratio_to_model"],
        )
    for name, q in results.get("quality", {}).items():
        if q.get("same_sizes"):
            continue
        new, old = q["configured"]["test_macro_f1"], q["unoptimised"]["test_macro_f1"]
        add(
            f"test macro-F1 (paper) >= the unoptimised model's ({name})",
            f"{new:.4f} vs {old:.4f}",
            new >= old,
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """RESULTS.md: one table per section, the targets, and how it was produced."""
    meta, machine = results["bench"], results["machine"]
    v = machine["versions"]
    lines = [
        "# iids benchmarks",
        "",
        f"Produced by `{meta['command']}` on {meta['measured_at']} in "
        f"{meta['duration_s'] / 60:.1f} minutes{' (QUICK mode)' if meta['quick'] else ''}.",
        f"Machine: {machine['cpus']} CPU(s), {machine['cpu_model']}; Python "
        f"{v['python']}, torch {v['torch']}, ray {v['ray']}, numpy {v['numpy']}, "
        f"pyarrow {v['pyarrow']}, scikit-learn {v['sklearn']}, imbalanced-learn "
        f"{v['imblearn']}. 1-minute load average {machine['load_avg_1m_at_start']} at "
        f"the start, {machine['load_avg_1m_at_end']} at the end (other work on the "
        "machine slows every figure).",
        "",
        "Data: " + "; ".join(f"{k}: {s}" for k, s in meta["data"].items()) + ".",
        "Models are untrained (speed does not depend on the weights); sizes come from "
        "`jobs/configs/<dataset>.yaml`.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {t['target']} | {t['measured']} | {_met(t['met'])} |"
        for t in results["targets"]
    ]

    lines += [
        "",
        "## 1-2. Machine limit and the bare model",
        "",
        f"fp32 matmul ({machine['matmul_n']}x{machine['matmul_n']}, torch, "
        f"{machine['torch_threads']} threads, median): "
        f"**{machine['matmul_gflops']:.1f} GFLOP/s** "
        f"({machine.get('matmul_gflops_1_thread', float('nan')):.1f} with 1 thread). "
        "FLOPs per row are counted "
        "analytically (convolutions; GRU as 3 gates x (input + hidden) matmuls per step "
        "per direction; attention projections, scores and weighted sum; linear head). "
        "torch's `FlopCounterMode` count is shown as a check. "
        "Ceiling = matmul FLOP/s / FLOPs per row. "
        "The bare model is what batch and online scoring run (`iids.scoring.Scorer`): "
        "`iids.model.for_inference(model)`, which is the native forward pass "
        "(`iids.native.NativeHybridIDS`: C, batch norms folded into the convolutions, "
        "one row per SIMD lane through every layer, tiles of rows split over torch's "
        "threads) where it was built, else the torch rewrite "
        "(`iids.model.InferenceHybridIDS`); with glibc malloc kept from returning "
        "activations to the kernel between passes "
        "(`iids.scoring.keep_allocations_on_the_heap`).",
        "",
        "| dataset | features | L | conv | GRU | attention | head | FLOPs/row "
        "| FlopCounterMode no_grad / autograd | ceiling rows/s | backend "
        "| bare model rows/s | of ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name in DATASETS:
        m = results["model"][name]
        p = m["flops_by_part"]
        backend = m.get("backend", "torch")
        if m.get("isa"):
            backend += f" ({m['isa']})"
        lines.append(
            f"| {name} | {m['num_features']} | {m['sequence_length']} "
            f"| {p['conv']:,} | {p['gru']:,} | {p['attention']:,} | {p['head']:,} "
            f"| {m['flops_per_row']:,} "
            f"| {m['flop_counter_mode_per_row']['no_grad']:,} / "
            f"{m['flop_counter_mode_per_row']['autograd']:,} "
            f"| {m['ceiling_rows_per_s']:,.0f} | {backend} | {m['rows_per_s']:,.0f} "
            f"| {100 * m['ceiling_ratio']:.1f}% |"
        )
    lines += [""]
    for name in DATASETS:
        lines.append(f"- {name} model: `{results['model'][name]['config']}`")
    lines += [
        "",
        "Where the bare model's time goes, by the parts FLOPs are counted by. Native "
        "pass: each tile's stages timed inside the C code while one thread scores all "
        "the rows, against the 1-thread share of the matmul rate. Torch rewrite: each "
        "step of `InferenceHybridIDS.stages()` timed alone on one 1024-row "
        "micro-batch with torch's threads, in turns. Medians. GFLOP/s counts the "
        "step's matmul FLOPs only; its elementwise work (gates, softmax, norms) is "
        "time without counted FLOPs.",
        "",
        "| dataset | backend | step | us/row | share of the forward | FLOPs/row "
        "| GFLOP/s | of the matmul rate |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in DATASETS:
        for backend, steps in results["model"][name].get("stages", {}).items():
            for step, t in steps.items():
                lines.append(
                    f"| {name} | {backend} | {step} | {t['us_per_row']:.2f} "
                    f"| {100 * t['share']:.0f}% | {t['flops_per_row']:,} "
                    f"| {t['gflops']:.1f} | {100 * t['of_matmul_rate']:.0f}% |"
                )
    lines += [
        "",
        "Other sizes, thread counts and backends, bare model on the same rows (not "
        "the configured model; what a change would buy; each against the ceiling of "
        "the matmul rate at its own thread count):",
        "",
        "| dataset | variant | backend | threads | bf16 | FLOPs/row | rows/s "
        "| of ceiling |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for name in DATASETS:
        for label, var in results["model"][name]["variants"].items():
            lines.append(
                f"| {name} | {label} | {var.get('backend', 'torch')} "
                f"| {var['threads']} | {'yes' if var.get('bf16') else 'no'} "
                f"| {var['flops_per_row']:,} | {var['rows_per_s']:,.0f} "
                f"| {100 * var['ceiling_ratio']:.1f}% |"
            )

    lines += [
        "",
        "## 3. Batch scoring end to end (Parquet in, Ray Data actors, Parquet out)",
        "",
        "`iids.batch.score_dataset`, wall time of the whole call (check the input, "
        "read, preprocess, score, write, verify, publish), on a local Ray with 2 CPUs "
        "(`init_ray(num_cpus=2)`); the input is a shuffled sample of the ingested "
        "rows in 8 Parquet files, sized to about "
        f"{meta['score_s']:.0f} s of one-thread model time. "
        "Only the feature and row-key columns are read. "
        "Ray Data's read tasks reserve a fraction of a CPU and the scoring actors "
        "what is left, so actors x threads can use both cores; each actor writes "
        "the batches it scores (up to 32,768 rows per batch and file). "
        "The bare model it is compared with runs in one process with torch's "
        "default threads (2 here), on the same rows.",
        "",
        "| dataset | rows | Ray CPUs | actors | threads/actor | batch | seconds "
        "| rows/s | of bare model (default threads) | of bare model (1 thread) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in DATASETS:
        b = results["batch_scoring"][name]
        bare = results["model"][name]["rows_per_s"]
        one = results["model"][name]["variants"]["same model, 1 thread"]["rows_per_s"]
        for s in b["settings"]:
            lines.append(
                f"| {name} | {b['rows']:,} | {s['ray_cpus']} | {s['num_actors']} "
                f"| {s['threads_per_actor']} | {s['batch_size']} | {s['seconds']:.1f} "
                f"| {s['rows_per_s']:,.0f} | {s['rows_per_s'] / bare:.2f} "
                f"| {s['rows_per_s'] / one:.2f} |"
            )
    lines.append("")
    for name in DATASETS:
        b = results["batch_scoring"][name]
        lines.append(
            f"- {name}: best on 2 CPUs {b['rows_per_s']:,.0f} rows/s "
            f"({b['ratio_to_model']:.2f} of the bare model) with {b['best']}; fixed "
            f"overhead (same call on 2,000 rows) {b['fixed_overhead_s']:.1f} s; "
            f"{b['rows_per_s_excluding_overhead']:,.0f} rows/s without it."
        )

    lines += [
        "",
        "## 4. Training on Ray Train (samples/s per epoch, start-up excluded)",
        "",
        "`iids.train._fit` on preprocessed rows (no SMOTE); 1 worker x 2 threads "
        "against 2 workers x 1 thread, so both use the whole machine. The last "
        "epoch's figure is reported (the first includes warm-up).",
        "",
        "| dataset | rows/epoch | global batch | 1 worker samples/s | 2 workers "
        "samples/s | 2 / 1 | per epoch (1w; 2w) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in DATASETS:
        t = results["training"][name]
        lines.append(
            f"| {name} | {t['rows_per_epoch']:,} | {t['batch_size']} "
            f"| {t['samples_per_s_1_worker']:,.0f} "
            f"| {t['samples_per_s_2_workers']:,.0f} | {t['scaling_2_over_1']:.2f} "
            f"| {t['samples_per_s_1_worker_by_epoch']}; "
            f"{t['samples_per_s_2_workers_by_epoch']} |"
        )
    for name in DATASETS:
        t = results["training"][name]
        if "samples_per_s_1_worker_1_thread" in t:
            lines += [
                "",
                f"{name}, 1 worker x 1 thread: "
                f"{t['samples_per_s_1_worker_1_thread']:,.0f} samples/s "
                f"(per epoch {t['samples_per_s_1_worker_1_thread_by_epoch']}).",
            ]

    s = results["smote"]
    lines += [
        "",
        "## 5. SMOTE: distributed (one Ray task per class) vs single-process",
        "",
        f"Training split of {s['split']['rows']:,} rows x {s['split']['features']} "
        f"features ({s['split']['mb']:,.0f} MB float32): Edge-IIoTset's published "
        f"class counts x 0.7 (the training share) x {meta['smote_scale']}, rows drawn "
        "from the synthetic Edge-IIoTset rows of each class with small noise on the "
        f"numeric columns. Sampling as in `jobs/configs/edge-iiotset.yaml`: "
        f"`{s['sampling']}`. Each variant runs in its own process; memory is the peak "
        "of the proportional set size (PSS) summed over that process and all its "
        "descendants (Ray's raylet, GCS and workers included for the distributed "
        "variant), sampled every 0.2 s.",
        "",
        "| variant | seconds | peak MB | MB before balancing | Ray start-up s |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant in ("single_process", "distributed"):
        d = s[f"{variant}_detail"]
        lines.append(
            f"| {variant.replace('_', '-')} | {d['seconds']:.1f} | {d['peak_mb']:,.0f} "
            f"| {d['before_mb']:,.0f} | {d['ray_start_s']:.1f} |"
        )
    lines += [
        "",
        f"Distributed / single-process speed-up: {s['speedup']:.2f}x "
        f"({s['distributed_detail']['synthetic_rows']:,} synthetic rows).",
        "",
        "## 6. Tree baseline vs the deep model (predict rows/s, same rows)",
        "",
        "| dataset | baseline | fit rows | fit s | baseline rows/s | bare model rows/s "
        "| model / baseline |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in DATASETS:
        b = results["baseline"][name]
        m = results["model"][name]["rows_per_s"]
        lines.append(
            f"| {name} | {b['model']} | {b['fit_rows']:,} | {b['fit_s']:.1f} "
            f"| {b['rows_per_s']:,.0f} | {m:,.0f} | {m / b['rows_per_s']:.2f} |"
        )
    lines += _serve_section(results.get("serve"))
    lines += _quality_section(results.get("quality"))
    return "\n".join(lines) + "\n"


def _quality_section(quality: dict | None) -> list[str]:
    """Test macro-F1 of the configured model sizes against the ones they replaced."""
    if not quality:
        return []
    lines = [
        "",
        "## 8. Quality: the configured model sizes against the unoptimised ones",
        "",
        "`python benchmarks/quality.py` (a separate run from the sections above): both "
        "sizes trained with the same settings, data and seed (paper protocol, 2 CPU "
        "workers), tested on the same split.",
        "",
        "| dataset | model | sizes | FLOPs/row | epochs | test macro-F1 | test accuracy "
        "| training wall s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, q in quality.items():
        if q.get("same_sizes"):
            notes.append(
                f"- {name}: the configured sizes are the unoptimised ones "
                f"(`{q['model']}`); the faster inference path computes the same "
                "outputs (tests/unit/test_model.py)."
            )
            continue
        for label in ("unoptimised", "configured"):
            r = q[label]
            lines.append(
                f"| {name} | {label} | `{r['model']}` | {r['flops_per_row']:,} "
                f"| {r['epochs_run']} | {r['test_macro_f1']:.4f} "
                f"| {r['test_accuracy']:.4f} | {r['wall_s']:,.0f} |"
            )
        notes.append(
            f"- {name}: {q['data']}; {q['epochs']} epochs, seed {q['seed']}; "
            f"measured {q['measured_at']} with `{q['command']}`."
        )
    return [*lines, "", *notes]


def _serve_section(serve: dict | None) -> list[str]:
    """The online-scoring latency table that `benchmarks/serve_latency.py` measured."""
    if not serve:
        return []
    lines = [
        "",
        "## 7. Online scoring: Ray Serve against a plain FastAPI server",
        "",
        f"`python benchmarks/serve_latency.py`, measured {serve['measured_at']} "
        f"(a separate run from the sections above), settings {serve['settings']}. "
        "On a 2-core machine shared with other work these figures are noisy; rerun "
        "the script on a quiet machine before quoting them.",
        "",
        "| server | clients | records/request | p50 ms | p99 ms | requests/s "
        "| records/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(
        serve["results"], key=lambda r: (r["records"], r["concurrency"], r["server"])
    ):
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['records']} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests_per_s']:.1f} | "
            f"{r['records_per_s']:,.0f} | {r['errors']} |"
        )
    return lines


# -- main ------------------------------------------------------------------------------


def write_results(results: dict[str, Any]) -> None:
    """results.json and RESULTS.md from every section measured so far (this run's, the
    online-scoring script's and the quality script's), with the targets re-checked."""
    if "bench" in results:
        results["targets"] = targets(results)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    if "bench" in results:
        RESULTS_MD.write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite RESULTS.md from results.json",
    )
    parser.add_argument("--smote-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        write_results(json.loads(RESULTS_JSON.read_text()))
        return
    if args.smote_child:
        smote_child(*args.smote_child)
        return

    import ray

    from iids.config import configure_logging
    from iids.runtime import init_ray

    configure_logging()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    measured_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results: dict[str, Any] = {
        "model": {},
        "baseline": {},
        "batch_scoring": {},
        "training": {},
    }

    logger.info("1/6 machine limit")
    results["machine"] = measure_machine(plan)

    work = Path(tempfile.mkdtemp(prefix="iids-bench-"))
    try:
        init_ray(None, num_cpus=2, object_store_memory=1 << 30)
        ray.data.DataContext.get_current().enable_progress_bars = False
        prepared = {}
        for name in DATASETS:
            logger.info("preparing %s", name)
            prepared[name] = prepare(name, plan, work)
        for name, data in prepared.items():
            logger.info("2/6 bare model, 6/6 tree baseline: %s", name)
            results["model"][name] = measure_model(data, plan, results["machine"])
            results["baseline"][name] = measure_baseline(data, plan)
        for name, data in prepared.items():
            logger.info("3/6 batch scoring: %s", name)
            one_thread = results["model"][name]["variants"]["same model, 1 thread"]
            rows, big, small = scoring_inputs(
                data, plan, work, one_thread["rows_per_s"]
            )
            settings = measure_scoring(data, plan.grid[name], rows, big, work, 2)
            best = max(settings, key=lambda s: s["rows_per_s"])
            overhead_s = score_once(
                data,
                small,
                work,
                best["num_actors"],
                best["threads_per_actor"],
                best["batch_size"],
            )  # the fixed cost: the same call on 2,000 rows
            logger.info("%s: fixed overhead %.1f s", name, overhead_s)
            results["batch_scoring"][name] = scoring_summary(
                settings, rows, overhead_s, results["model"][name]["rows_per_s"]
            )
        for name, data in prepared.items():
            logger.info("4/6 training: %s", name)
            # Training runs the model in torch: its epochs are sized by the torch
            # rewrite's rate.
            variants = results["model"][name]["variants"]
            one_thread = variants.get(
                "same model, torch rewrite, 1 thread", variants["same model, 1 thread"]
            )
            results["training"][name] = measure_training(
                data, plan, work, one_thread["rows_per_s"]
            )
        ray.shutdown()
        logger.info("5/6 SMOTE")
        results["smote"] = measure_smote(prepared["edge-iiotset"], plan, work)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    # Assemble, merge into results.json (keeping other keys), write RESULTS.md.
    duration_s = time.perf_counter() - started
    results["bench"] = {
        "command": "make bench"
        + (" (benchmarks/bench.py --quick)" if args.quick else ""),
        "measured_at": measured_at,
        "duration_s": round(duration_s, 1),
        "quick": args.quick,
        "smote_scale": plan.smote_scale,
        "score_s": plan.score_s,
        "data": {name: data.source for name, data in prepared.items()},
    }
    results["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    existing = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    existing.update(results)
    write_results(existing)
    for t in existing["targets"]:
        logger.info("%s: %s (%s)", t["target"], t["measured"], _met(t["met"]))
    logger.info("done in %.1f min: %s, %s", duration_s / 60, RESULTS_JSON, RESULTS_MD)


if __name__ == "__main__":
    main()
