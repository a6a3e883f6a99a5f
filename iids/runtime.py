"""Connecting to Ray: a cluster when one is named, else a local Ray embedded in the process."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
) -> None:
    """Start or join Ray once per process.

    Args:
        address: a cluster address (`ray://…` or `auto`), or None for a local Ray.
        num_cpus: CPUs of a local Ray (None: all of this machine's).
        object_store_memory: bytes of a local Ray's object store (None: Ray's default).
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        logger.info("joined the Ray cluster at %s", address)
        return
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=object_store_memory,
        log_to_driver=True,
    )
    logger.info(
        "started a local Ray with %s CPU(s)", ray.cluster_resources().get("CPU")
    )
