"""Ray Job entry point: ingest raw CSV/Parquet into a partitioned Parquet dataset.

    python jobs/ingest.py --dataset ciciov2024 --input s3://raw/cic/ --output URI
        [--encoding decimal|hex|binary] [--schema FILE] [--config FILE]

Every row is accounted for in `OUTPUT/_manifest.json`: rows read = rows written + rows
quarantined, each quarantined row with its file, line and reason. Flags win over the
optional YAML config (keys `dataset`, `encoding`, `schema_file`, `inputs`, `output`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from iids.config import ConfigError, configure_logging, ray_address, storage_from_env
from iids.submit import IngestJobConfig, load_job_config, require, run_job

logger = logging.getLogger("jobs.ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML with the keys below")
    parser.add_argument("--dataset", help="ciciov2024 | edge-iiotset | generic")
    parser.add_argument("--encoding", help="CICIoV2024 encoding")
    parser.add_argument("--schema", help="generic: the schema YAML")
    parser.add_argument(
        "--input", action="append", help="file, folder or glob; repeatable"
    )
    parser.add_argument("--output", help="the dataset directory to write")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)

    # Validate everything before Ray starts.
    try:
        job = load_job_config(
            "ingest",
            args.config,
            dataset=args.dataset,
            encoding=args.encoding,
            schema_file=args.schema,
            inputs=args.input,
            output=args.output,
        )
        require(job, args.config, "--input/--output")
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2

    return run_job(logger, "ingest", lambda: _run(job))


def _run(job: IngestJobConfig) -> int:
    from iids.datasets import get_adapter
    from iids.ingest import ingest
    from iids.runtime import init_ray

    adapter = get_adapter(job.dataset, encoding=job.encoding, schema=job.schema_file)
    init_ray(ray_address())
    manifest = ingest(adapter, job.inputs, job.output, storage=storage_from_env())
    logger.info(
        "manifest %s",
        json.dumps({k: v for k, v in manifest.items() if k != "files"}, default=str),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
