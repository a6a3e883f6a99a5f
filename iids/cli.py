"""The `iids` command line.

Each subcommand prints a human-readable result, writes a machine-readable JSON result
(`--json-out FILE`, and the manifest or report it always writes beside its output), and exits
non-zero on failure with a one-line error that says what is wrong and where.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from iids.config import (
    ConfigError,
    configure_logging,
    load_train_settings,
    ray_address,
    storage_from_env,
)

logger = logging.getLogger(__name__)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="iids: train and run a hybrid ResNet-1D / BiGRU / attention intrusion detector on Ray.",
)
console = Console()

JsonOut = Annotated[
    Path | None, typer.Option("--json-out", help="also write the result as JSON here")
]


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="debug logging")
    ] = False,
) -> None:
    configure_logging(verbose)


def _emit(result: dict[str, Any], json_out: Path | None) -> None:
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


def _fail(exc: BaseException) -> None:
    """One clear line on stderr, exit 1 (the traceback goes to the debug log)."""
    logger.debug("failure", exc_info=exc)
    cause = getattr(exc, "cause", None) or exc
    console.print(f"[bold red]error:[/] {cause}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _ray(num_cpus: int | None = None) -> None:
    from iids.runtime import init_ray

    init_ray(ray_address(), num_cpus=num_cpus)


@app.command()
def ingest(
    input: Annotated[
        list[str],
        typer.Option("--input", help="files, folders or globs; local or s3://"),
    ],
    output: Annotated[
        str, typer.Option(help="dataset directory to write (local or s3://)")
    ],
    dataset: Annotated[
        str, typer.Option(help="ciciov2024 | edge-iiotset | generic")
    ] = "ciciov2024",
    encoding: Annotated[
        str, typer.Option(help="CICIoV2024 encoding: decimal | hex | binary")
    ] = "decimal",
    schema: Annotated[
        Path | None, typer.Option(help="YAML schema of a generic dataset")
    ] = None,
    nonfinite: Annotated[
        str, typer.Option(help="NaN/inf in a numeric column: quarantine | impute (0.0)")
    ] = "quarantine",
    day: Annotated[
        str | None, typer.Option(help="write into (only) the day=YYYY-MM-DD partition")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Ingest raw CSV/Parquet into partitioned Parquet, quarantining bad rows."""
    from iids.datasets import get_adapter
    from iids.ingest import ingest as run_ingest
    from iids.ingest import parse_day

    try:
        day = parse_day(day) if day else None
        adapter = get_adapter(dataset, encoding=encoding, schema=schema)
        _ray()
        manifest = run_ingest(
            adapter,
            input,
            output,
            storage=storage_from_env(),
            nonfinite=nonfinite,
            day=day,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    table = Table("rows read", "written", "quarantined", "by reason")
    table.add_row(
        f"{manifest['rows_read']:,}",
        f"{manifest['rows_written']:,}",
        f"{manifest['rows_quarantined']:,}",
        json.dumps(manifest["quarantined_by_reason"])
        if manifest["quarantined_by_reason"]
        else "-",
    )
    console.print(table)
    written = f"{output.rstrip('/')}/day={day}" if day else output.rstrip("/")
    console.print(f"manifest: {written}/_manifest.json")
    _emit(manifest, json_out)


@app.command()
def train(
    data: Annotated[str, typer.Option(help="an ingested dataset (iids ingest output)")],
    output: Annotated[str, typer.Option(help="where model bundles are written")],
    dataset: Annotated[str | None, typer.Option(help="dataset name")] = None,
    schema: Annotated[
        Path | None, typer.Option(help="YAML schema of a generic dataset")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="task name (dataset default if unset)")
    ] = None,
    protocol: Annotated[str | None, typer.Option(help="honest | paper")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray Train workers")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="one GPU per worker")] = False,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML training config")] = None,
    splits: Annotated[
        str | None, typer.Option(help="also write the test split here")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Ray Train run name; reuse to resume")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Train the hybrid model with Ray Train; write a bundle with its report."""
    from iids.train import train as run_train

    try:
        settings = load_train_settings(
            config,
            dataset=dataset,
            schema_file=str(schema) if schema else None,
            task=task,
            protocol=protocol,
            num_workers=workers,
            use_gpu=gpu or None,
            epochs=epochs,
        )
        _ray()
        outcome = run_train(
            data,
            output,
            settings,
            storage=storage_from_env(),
            splits_uri=splits,
            run_name=run_name,
        )
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    _print_report(outcome.report)
    console.print(f"model bundle: {outcome.bundle_uri}")
    console.print(
        f"to score with it from {output}: iids promote {outcome.bundle_uri}",
        highlight=False,
        soft_wrap=True,
    )
    _emit(outcome.report, json_out)


@app.command()
def evaluate(
    model: Annotated[
        str, typer.Option(help="a model bundle, or a models root (its promoted one)")
    ],
    data: Annotated[str, typer.Option(help="an ingested dataset with labels")],
    protocols: Annotated[
        str | None,
        typer.Option(
            help="retrain with the bundle's config under these, e.g. paper,honest"
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="seeds per protocol (with --protocols)", min=1)
    ] = 1,
    output: Annotated[
        str, typer.Option(help="where retraining runs keep their state")
    ] = "runs/evaluate",
    json_out: JsonOut = None,
) -> None:
    """Score a labelled dataset with a bundle, or retrain under protocols and seeds."""
    from iids.bundle import load_bundle, resolve_bundle
    from iids.config import TrainSettings
    from iids.evaluate import evaluate_bundle
    from iids.train import evaluate_protocols

    storage = storage_from_env()
    try:
        model = resolve_bundle(model, storage)
        _ray()
        if protocols is None:
            result = evaluate_bundle(model, data, storage=storage)
        else:
            settings = TrainSettings(**load_bundle(model, storage).config)
            names = [p.strip() for p in protocols.split(",") if p.strip()]
            result = evaluate_protocols(
                data, settings, names, seeds, output_uri=output, storage=storage
            )
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    if protocols is None:
        _print_metrics(result)
    else:
        _print_protocols(result)
    _emit(result, json_out)


@app.command()
def score(
    model: Annotated[
        str, typer.Option(help="a model bundle, or a models root (its promoted one)")
    ],
    input: Annotated[
        str, typer.Option("--input", help="Parquet rows to score (ingested)")
    ],
    output: Annotated[
        str,
        typer.Option(
            help="where predictions are published, with the rows that could not be "
            "scored under _quarantine/"
        ),
    ],
    day: Annotated[
        str | None, typer.Option(help="score only the day=YYYY-MM-DD partition")
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="scoring actors, each holding one copy of the model "
            "(default: one per --threads CPUs of the Ray cluster)",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="torch threads per actor; on CPUs, more actors of 1 thread each "
            "usually score faster than fewer actors with more threads",
        ),
    ] = 1,
    alert_attack_share: Annotated[
        float | None,
        typer.Option(help="exit 3 with an alert line above this share of attacks"),
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Batch-score stored rows with Ray Data; publish predictions exactly once."""
    from iids.batch import score_dataset
    from iids.ingest import parse_day

    try:
        day = parse_day(day) if day else None
        _ray()
        summary = score_dataset(
            model,
            input,
            output,
            day=day,
            storage=storage_from_env(),
            num_actors=actors,
            threads_per_actor=threads,
            alert_attack_share=alert_attack_share,
        )
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: e.g. output is a file
        _fail(exc)
    table = Table("predicted class", "rows")
    for name, count in summary["rows_per_class"].items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(
        f"{summary['rows_scored']:,} rows scored by model {summary['model_version']} at "
        f"{summary['rows_per_s'] or 0:,.0f} rows/s -> {summary['output']}"
    )
    if summary["rows_quarantined"]:
        console.print(
            f"{summary['rows_quarantined']:,} rows quarantined "
            f"{summary['quarantined_by_reason']} -> {summary['quarantine']}",
            highlight=False,
        )
    _emit(summary, json_out)
    if summary["alert"]:
        console.print(f"[bold red]{summary['alert']}[/]", highlight=False)
        raise typer.Exit(3)


@app.command()
def promote(
    bundle: Annotated[
        str, typer.Argument(help="a model bundle: …/models/<version>, local or s3://")
    ],
    json_out: JsonOut = None,
) -> None:
    """Make a bundle the one its models root scores with (promoting an older one rolls
    back): `iids score --model …/models` and the nightly job then use it."""
    from iids.bundle import promote as promote_bundle

    try:
        record = promote_bundle(bundle, storage_from_env())
    except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: StorageError
        _fail(exc)
    f1 = record["test_macro_f1"]
    console.print(
        f"promoted {record['version']} (test macro-F1 "
        f"{'n/a' if f1 is None else f'{f1:.4f}'}; was "
        f"{record['previous_version'] or 'none'}): {record['bundle']}",
        highlight=False,
        soft_wrap=True,
    )
    _emit(record, json_out)


@app.command()
def quickstart(
    data: Annotated[
        str | None,
        typer.Option(help="folder of CICIoV2024 decimal CSVs (plain or .gz)"),
    ] = None,
    output: Annotated[
        str, typer.Option(help="where everything is written")
    ] = "runs/quickstart",
    config: Annotated[Path | None, typer.Option(help="YAML training config")] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    json_out: JsonOut = None,
) -> None:
    """The main job: ingest, train, evaluate, save and batch-score on a local Ray."""
    from iids.quickstart import default_data
    from iids.quickstart import quickstart as run_quickstart

    config = config or _default_quickstart_config()
    try:
        settings = load_train_settings(config, epochs=epochs)
        data = data or default_data()
        if data is None:
            data = _synthetic_quickstart_data(output)
        _ray()
        summary = run_quickstart(data, output, settings, storage=storage_from_env())
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    _print_quickstart(summary)
    _emit(summary, json_out)


@app.command()
def submit(
    kind: Annotated[
        str, typer.Argument(help="train | score | ingest (the jobs/ entry point)")
    ],
    address: Annotated[
        str, typer.Option(help="the cluster's job server, e.g. http://HEAD:8265")
    ],
    config: Annotated[
        Path, typer.Option(help="the job's YAML config, inside the project")
    ],
    job_args: Annotated[
        list[str] | None,
        typer.Argument(help="extra flags for the entry point, after `--`"),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="stream the logs; exit with the job")
    ] = False,
    pip: Annotated[
        bool,
        typer.Option(
            "--pip/--no-pip",
            help="install the pinned requirements in the job (--no-pip when the "
            "cluster image has iids)",
        ),
    ] = True,
    auth_token_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding the cluster's Ray token (default: ~/.ray/auth_token "
            "for a cluster on this machine)"
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="KEY=VALUE for the job's environment; repeatable"),
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Submit a training, scoring or ingest job to a Ray cluster as a Ray Job."""
    from iids.submit import local_auth_token, read_auth_token
    from iids.submit import submit as run_submit

    try:
        if kind not in ("train", "score", "ingest"):
            raise ValueError(
                f"job kind: expected train, score or ingest, found {kind!r}"
            )
        env_vars = dict(item.split("=", 1) for item in env or [] if "=" in item)
        if len(env_vars) != len(env or []):
            raise ValueError(f"--env: expected KEY=VALUE, found {env}")
        token = (
            read_auth_token(auth_token_file)
            if auth_token_file
            else local_auth_token(address)
        )
        result = run_submit(
            kind,  # type: ignore[arg-type]
            address,
            config,
            follow=follow,
            job_args=job_args or [],
            install_pip=pip,
            auth_token=token,
            env_vars=env_vars,
            write=lambda chunk: console.out(chunk, end="", highlight=False),
        )
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    console.print(f"job id: {result.job_id}  ({result.address})", highlight=False)
    if result.status is None:
        console.print(
            f"follow it with: ray job logs --follow {result.job_id} "
            f"--address {result.address}",
            highlight=False,
        )
    else:
        console.print(f"job {result.job_id} ended {result.status}", highlight=False)
    _emit(result.as_dict(), json_out)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def synth(
    dataset: Annotated[str, typer.Argument(help="ciciov2024 | edge-iiotset")],
    rows: Annotated[int, typer.Option(help="data rows to write", min=1)],
    output: Annotated[
        Path, typer.Option(help="a folder, or a .csv / .csv.gz file name")
    ],
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    json_out: JsonOut = None,
) -> None:
    """Write synthetic rows in a dataset's raw schema (marked synthetic)."""
    from iids.synth import synth as run_synth

    try:
        result = run_synth(dataset, rows, seed, output)
    except (ValueError, OSError) as exc:
        _fail(exc)
    table = Table("class", "rows", title=f"synthetic {result['dataset']}")
    for name, count in result["class_counts"].items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"written: {result['path']} (+ .synthetic.json)")
    _emit(result, json_out)


SYNTHETIC_QUICKSTART_ROWS = 300_000


def _synthetic_quickstart_data(output: str) -> str:
    """Synthetic CICIoV2024 rows for a machine without the real dataset."""
    from iids.synth import synth as run_synth

    folder = Path(output) / "raw-synthetic"
    console.print(
        "[yellow]no dataset given and none found under IIDS_DATA_DIR: running on "
        f"{SYNTHETIC_QUICKSTART_ROWS:,} SYNTHETIC CICIoV2024 rows.[/] The real dataset: "
        "https://www.unb.ca/cic/datasets/iov-dataset-2024.html"
    )
    run_synth("ciciov2024", SYNTHETIC_QUICKSTART_ROWS, 0, folder)
    return str(folder)


def _default_quickstart_config() -> Path | None:
    """`jobs/configs/quickstart.yaml` of a source checkout, when there is one."""
    path = (
        Path(__file__).resolve().parent.parent / "jobs" / "configs" / "quickstart.yaml"
    )
    return path if path.is_file() else None


@app.command()
def serve(
    model: Annotated[
        str,
        typer.Option(
            help="a model bundle (directory or s3://), or a models root: its promoted "
            "bundle, resolved once at start"
        ),
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    max_batch_size: Annotated[
        int, typer.Option(help="requests gathered into one model call")
    ] = 32,
    batch_wait_timeout_s: Annotated[
        float, typer.Option(help="longest wait for a batch to fill")
    ] = 0.005,
    max_replicas: Annotated[
        int, typer.Option(help="replicas autoscaled between 1 and this")
    ] = 1,
    token_file: Annotated[
        Path | None,
        typer.Option(help="file holding the bearer token (else IIDS_SERVE_TOKEN)"),
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Serve a bundle over HTTP on a local Ray Serve; blocks until Ctrl-C."""
    import time

    from ray import serve as ray_serve

    from iids.bundle import load_bundle, resolve_bundle
    from iids.serving import build_app

    # Replicas may run in another directory: pass local paths as absolute ones.
    if "://" not in model:
        model = str(Path(model).resolve())
    try:
        # Every replica gets the same bundle, even if another is promoted later.
        model = resolve_bundle(model, storage_from_env())
        bundle = load_bundle(model, storage_from_env())
        application = build_app(
            {
                "model_uri": model,
                "max_batch_size": max_batch_size,
                "batch_wait_timeout_s": batch_wait_timeout_s,
                "token_file": str(token_file.resolve()) if token_file else None,
            },
            max_replicas=max_replicas,
        )
        _ray()
        ray_serve.start(http_options={"host": host, "port": port})
        ray_serve.run(application, name="iids", route_prefix="/")
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(exc)
    url = f"http://{host}:{port}"
    console.print(
        f"serving model {bundle.version} ({', '.join(bundle.classes)}) at "
        f"{url}/v1/predict; Ctrl-C to stop",
        highlight=False,
    )
    _emit(
        {"url": url, "model_bundle": model, "model_version": bundle.version}, json_out
    )
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        ray_serve.shutdown()


# -- output ---------------------------------------------------------------------------


def _print_metrics(result: dict[str, Any]) -> None:
    table = Table("class", "precision", "recall", "F1", "support", title="per class")
    for name, m in result["per_class"].items():
        table.add_row(
            name,
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            f"{m['support']:,}",
        )
    console.print(table)
    fpr = "n/a" if result.get("fpr") is None else f"{result['fpr']:.5f}"
    console.print(
        f"macro-F1 {result['macro_f1']:.4f}  accuracy {result['accuracy']:.4f}  "
        f"benign FPR {fpr}"
    )


def _print_protocols(result: dict[str, Any]) -> None:
    table = Table(
        "protocol",
        "macro-F1",
        "baseline macro-F1",
        "accuracy",
        "benign FPR",
        "test rows in train",
        title=f"{result['dataset']} / {result['task']}: mean ± std over {result['seeds']} seed(s)",
    )
    for name, r in result["protocols"].items():
        mean, std = r["mean"], r["std"]

        def cell(key: str, mean=mean, std=std) -> str:
            return f"{mean[key]:.4f} ± {std[key]:.4f}" if key in mean else "n/a"

        table.add_row(
            name,
            cell("macro_f1"),
            cell("baseline_macro_f1"),
            cell("accuracy"),
            cell("fpr"),
            f"{mean['train_test_overlap']:.0f}",
        )
    console.print(table)


def _print_report(report: dict[str, Any]) -> None:
    _print_metrics(report)
    rows = report["rows"]
    console.print(
        f"protocol {report['protocol']}: {rows['train']:,} train rows "
        f"({rows['train_after_smote']:,} after SMOTE), {rows['test']:,} test rows, "
        f"{rows['train_test_overlap']:,} test rows also in train"
    )


def _print_quickstart(s: dict[str, Any]) -> None:
    table = Table(
        title=f"iids quickstart: {s['dataset']} / {s['task']} ({s['protocol']} protocol)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    fpr = "n/a" if s["fpr"] is None else f"{s['fpr']:.5f}"
    baseline = (
        "n/a" if s["baseline_macro_f1"] is None else f"{s['baseline_macro_f1']:.4f}"
    )
    for name, value in (
        (
            "rows ingested",
            f"{s['rows_read']:,} ({s['rows_quarantined']:,} quarantined)",
        ),
        ("test macro-F1", f"{s['macro_f1']:.4f}"),
        ("test accuracy", f"{s['accuracy']:.4f}"),
        ("benign false-positive rate", fpr),
        ("tree baseline macro-F1", baseline),
        ("model µs per row (batch 4096)", f"{s['latency_us_per_row']:.2f}"),
        ("epochs run", str(s["epochs_run"])),
        ("test rows batch-scored", f"{s['rows_scored']:,}"),
        ("batch scoring rows/s", f"{s['scoring_rows_per_s'] or 0:,.0f}"),
        ("total time", f"{s['seconds']['total_s']:.0f} s"),
    ):
        table.add_row(name, value)
    console.print(table)
    console.print("written:")
    console.print(f"  model bundle   {s['model_bundle']}")
    console.print(f"  report         {s['files']['report']} (+ report.json, *.png)")
    console.print(f"  predictions    {s['predictions']}")
    console.print(f"  dataset        {s['files']['data']}")
    console.print(f"  summary        {s['output']}/summary.json")
