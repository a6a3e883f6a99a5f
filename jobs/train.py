"""Ray Job entry point: train the hybrid model from a YAML job config.

    python jobs/train.py --config jobs/configs/ciciov2024.yaml [--data URI]
        [--output URI] [--run-name NAME] [--splits URI]

The config holds the training settings (`iids.config.TrainSettings`) beside the job's
keys `data`, `output`, `run_name` and `splits`; flags win over the file. Run it on a
cluster with `iids submit train`, `ray job submit` or the KubeRay RayJob in
`infra/kuberay/`; Ray passes the cluster address in `RAY_ADDRESS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from iids.config import ConfigError, configure_logging, ray_address, storage_from_env
from iids.submit import TrainJobConfig, load_job_config, require, run_job

logger = logging.getLogger("jobs.train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the job's YAML config")
    parser.add_argument("--data", help="an ingested dataset (overrides `data`)")
    parser.add_argument("--output", help="where bundles go (overrides `output`)")
    parser.add_argument("--run-name", help="Ray Train run name; reuse to resume")
    parser.add_argument("--splits", help="also write the test split here")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)

    # Validate everything before Ray starts.
    try:
        job = load_job_config(
            "train",
            args.config,
            data=args.data,
            output=args.output,
            run_name=args.run_name,
            splits=args.splits,
        )
        require(job, args.config, "--data/--output")
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2

    return run_job(logger, "training", lambda: _run(job))


def _run(job: TrainJobConfig) -> int:
    from iids.runtime import init_ray
    from iids.train import train

    init_ray(ray_address())
    outcome = train(
        job.data,
        job.output,
        job.settings,
        storage=storage_from_env(),
        splits_uri=job.splits,
        run_name=job.run_name,
    )
    logger.info(
        "model bundle %s: macro-F1 %.4f, accuracy %.4f",
        outcome.bundle_uri,
        outcome.report["macro_f1"],
        outcome.report["accuracy"],
    )
    logger.info("result %s", json.dumps({"model_bundle": outcome.bundle_uri}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
