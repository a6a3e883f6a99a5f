"""Does the faster model lose quality? Train the previous and the configured model sizes alike.

For each dataset, the model sizes of `jobs/configs/<dataset>.yaml` (the configured, faster
model) and the sizes they replaced (`bench.UNOPTIMISED`) are trained with the same settings, the
same data and the same seed, under the `paper` protocol, and tested on the same split. The
test macro-F1 of each goes to benchmarks/results.json under `quality` (other keys are kept);
benchmarks/RESULTS.md is rewritten with it.

    python benchmarks/quality.py                          # both datasets
    python benchmarks/quality.py --dataset edge-iiotset --rows 40000 --epochs 4

CICIoV2024 uses the real files under IIDS_DATA_DIR (or ../shared/data); Edge-IIoTset uses
synthetic raw rows (`iids synth`), since the curated files are not available here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import RESULTS_JSON, UNOPTIMISED, count_flops, write_results  # noqa: E402

CONFIGS = ROOT / "jobs" / "configs"

logger = logging.getLogger("quality")


def _settings(name: str, sizes: dict, epochs: int, seed: int):
    """The dataset's job config, made to run here: paper protocol, 2 CPU workers."""
    from iids.config import ModelSettings, TrainSettings

    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    keep = ("dataset", "encoding", "task", "learning_rate", "weight_decay", "sampling")
    return TrainSettings(
        **{k: config[k] for k in keep if k in config},
        protocol="paper",
        epochs=epochs,
        patience=epochs,
        batch_size=1024,
        num_workers=2,
        cpus_per_worker=1,
        threads_per_worker=1,
        use_gpu=False,
        seed=seed,
        baseline=False,
        min_rows_per_epoch=0,
        model=ModelSettings(**sizes),
    )


def _raw_data(name: str, rows: int, work: Path) -> tuple[str, str]:
    """(raw files, where they came from) for one dataset."""
    from iids.config import data_dir
    from iids.synth import synth

    if name == "ciciov2024":
        path = data_dir() / "ciciov2024" / "decimal"
        if not path.exists():
            raise SystemExit(f"no CICIoV2024 files at {path}; set IIDS_DATA_DIR")
        return str(path), f"real CICIoV2024 decimal files ({path})"
    raw = work / f"{name}-raw"
    synth(name, rows, 0, raw)
    return str(raw), f"iids synth {name}, {rows:,} rows, seed 0"


def compare(name: str, rows: int, epochs: int, seed: int, work: Path) -> dict[str, Any]:
    """Train the unoptimised and the configured sizes on the same data; test both."""
    from iids.ingest import ingest
    from iids.model import HybridIDS
    from iids.storage import Storage
    from iids.train import train

    storage = Storage()
    configured = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]
    if _sizes(configured) == _sizes(UNOPTIMISED[name]):
        return {"same_sizes": True, "model": configured}
    raw, source = _raw_data(name, rows, work)
    variants = {"unoptimised": UNOPTIMISED[name], "configured": configured}
    data_uri = str(work / f"{name}-data")
    adapter = _settings(name, configured, epochs, seed).adapter()
    ingest(adapter, [raw], data_uri, storage=storage)

    out: dict[str, Any] = {"data": source, "epochs": epochs, "seed": seed}
    for label, sizes in variants.items():
        settings = _settings(name, sizes, epochs, seed)
        logger.info("%s: training the %s model %s", name, label, sizes)
        started = time.perf_counter()
        outcome = train(
            data_uri,
            str(work / f"{name}-{label}-models"),
            settings,
            storage=storage,
            run_name=f"quality-{name}-{label}",
        )
        report = outcome.report
        model = HybridIDS(
            _num_features(outcome.bundle_uri, storage),
            len(report["classes"]),
            settings.model.build(),
        )
        out[label] = {
            "model": sizes,
            "flops_per_row": count_flops(model)["total"],
            "test_macro_f1": report["macro_f1"],
            "test_accuracy": report["accuracy"],
            "epochs_run": report["training"]["epochs_run"],
            "best_epoch": report["training"]["best_epoch"],
            "test_rows": report["rows"]["test"],
            "wall_s": round(time.perf_counter() - started, 1),
        }
        logger.info("%s %s: test macro-F1 %.4f", name, label, report["macro_f1"])
    out["macro_f1_delta"] = round(
        out["configured"]["test_macro_f1"] - out["unoptimised"]["test_macro_f1"], 4
    )
    return out


def _sizes(sizes: dict) -> dict:
    """Model sizes with the defaults filled in, for comparing two configs."""
    from iids.config import ModelSettings

    return ModelSettings(**sizes).model_dump()


def _num_features(bundle_uri: str, storage) -> int:
    from iids.bundle import load_bundle

    return load_bundle(bundle_uri, storage).preprocessor.num_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        choices=("ciciov2024", "edge-iiotset", "all"),
        default="all",
    )
    parser.add_argument(
        "--rows", type=int, default=40_000, help="synthetic Edge-IIoTset rows"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from iids.config import configure_logging
    from iids.runtime import init_ray

    configure_logging()
    logging.getLogger("quality").setLevel(logging.INFO)
    names = ["ciciov2024", "edge-iiotset"] if args.dataset == "all" else [args.dataset]
    existing = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    quality = existing.get("quality", {})
    work = Path(tempfile.mkdtemp(prefix="iids-quality-"))
    started = time.perf_counter()
    try:
        init_ray(None, num_cpus=os.cpu_count() or 2, object_store_memory=1 << 30)
        for name in names:
            result = compare(name, args.rows, args.epochs, args.seed, work)
            result["measured_at"] = dt.datetime.now(dt.UTC).isoformat(
                timespec="seconds"
            )
            result["command"] = (
                f"python benchmarks/quality.py --dataset {name} --rows {args.rows} "
                f"--epochs {args.epochs} --seed {args.seed}"
            )
            quality[name] = result
            existing = (
                json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
            )
            existing["quality"] = quality
            write_results(existing)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "done in %.1f min -> %s", (time.perf_counter() - started) / 60, RESULTS_JSON
    )
    for name in names:
        q = quality[name]
        if q.get("same_sizes"):
            print(f"{name}: the configured sizes are the unoptimised ones")
            continue
        print(
            f"{name}: unoptimised {q['unoptimised']['test_macro_f1']:.4f}, "
            f"configured {q['configured']['test_macro_f1']:.4f} "
            f"(delta {q['macro_f1_delta']:+.4f})"
        )


if __name__ == "__main__":
    main()
