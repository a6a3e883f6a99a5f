"""Ray Job entry point: score one day of stored logs with a model bundle.

    python jobs/score_nightly.py --model BUNDLE --input URI --output URI
        [--day YYYY-MM-DD] [--actors N] [--threads N] [--config FILE]

The day defaults to yesterday (UTC), so a nightly schedule needs no date arithmetic.
Predictions are published once, completely, at `OUTPUT/day=DAY` with a summary; a
rerun of the same night replaces them. Flags win over the optional YAML config
(`jobs/configs/score-nightly.yaml`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from iids.config import ConfigError, configure_logging, ray_address, storage_from_env
from iids.submit import ScoreJobConfig, load_job_config, require, run_job, yesterday_utc

logger = logging.getLogger("jobs.score_nightly")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML with model/input/output/day keys")
    parser.add_argument(
        "--model", help="a model bundle, or a models root (its promoted bundle)"
    )
    parser.add_argument("--input", help="ingested Parquet rows, partitioned by day")
    parser.add_argument("--output", help="where predictions are published")
    parser.add_argument("--day", help="YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument(
        "--actors",
        type=int,
        help="scoring actors, each holding one copy of the model (default: one per "
        "--threads CPUs of the Ray cluster when scoring starts)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per actor (default: 1; on CPUs, more actors of one "
        "thread each usually score faster than fewer actors with more threads)",
    )
    parser.add_argument(
        "--alert-attack-share",
        type=float,
        help="exit 3 with an alert line when more rows than this share are attacks",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)

    # Validate everything before Ray starts.
    try:
        job = load_job_config(
            "score",
            args.config,
            model=args.model,
            input=args.input,
            output=args.output,
            day=args.day,
            num_actors=args.actors,
            threads_per_actor=args.threads,
            alert_attack_share=args.alert_attack_share,
        )
        require(job, args.config, "--model/--input/--output")
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2

    return run_job(logger, "scoring", lambda: _run(job))


def _run(job: ScoreJobConfig) -> int:
    day = job.day or yesterday_utc()

    from iids.batch import score_dataset
    from iids.runtime import init_ray

    init_ray(ray_address())
    logger.info("scoring day=%s of %s with %s", day, job.input, job.model)
    summary = score_dataset(
        job.model,
        job.input,
        job.output,
        day=day,
        storage=storage_from_env(),
        num_actors=job.num_actors,
        threads_per_actor=job.threads_per_actor,
        alert_attack_share=job.alert_attack_share,
    )
    logger.info("summary %s", json.dumps(summary, default=str))
    if summary["alert"]:
        logger.error("%s", summary["alert"])
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
