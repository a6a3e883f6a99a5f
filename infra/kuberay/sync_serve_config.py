"""Copy `serve/config.yaml` into the RayService's `serveConfigV2` (or check they agree).

    python infra/kuberay/sync_serve_config.py          # rewrite rayservice.yaml
    python infra/kuberay/sync_serve_config.py --check  # exit 1 when they differ

`serve/config.yaml` is the one Serve config (`serve deploy serve/config.yaml` uses it as
is); the RayService carries a copy because KubeRay takes the config inline. The copy
differs in one place only: a cluster loads its model bundle from S3, so each
deployment's `user_config.model_uri` becomes `CLUSTER_MODEL_URI`.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "serve" / "config.yaml"
RAYSERVICE = ROOT / "infra" / "kuberay" / "rayservice.yaml"
_KEY = "  serveConfigV2: |"
#: The bundle a cluster serves; replace with the promoted bundle's version.
CLUSTER_MODEL_URI = "s3://iids/models/ciciov2024/PROMOTED-VERSION"
_INDENT = "    "


def embedded_config(rayservice: Path = RAYSERVICE) -> dict:
    """The Serve config the RayService carries, parsed."""
    manifest = yaml.safe_load(rayservice.read_text())
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def cluster_config(serve_config: Path = SERVE_CONFIG) -> dict:
    """`serve_config` as a cluster runs it: model bundles from `CLUSTER_MODEL_URI`."""
    config = copy.deepcopy(yaml.safe_load(serve_config.read_text()))
    for app in config.get("applications", []):
        for deployment in app.get("deployments", []):
            user_config = deployment.get("user_config")
            if isinstance(user_config, dict) and "model_uri" in user_config:
                user_config["model_uri"] = CLUSTER_MODEL_URI
    return config


def in_sync(serve_config: Path = SERVE_CONFIG, rayservice: Path = RAYSERVICE) -> bool:
    """Whether the RayService carries `serve_config` (as a cluster runs it)."""
    return embedded_config(rayservice) == cluster_config(serve_config)


def sync(serve_config: Path = SERVE_CONFIG, rayservice: Path = RAYSERVICE) -> None:
    """Replace the RayService's `serveConfigV2` block with `cluster_config`."""
    lines = rayservice.read_text().splitlines()
    if _KEY not in lines:
        raise ValueError(f"{rayservice}: no line {_KEY.strip()!r} to replace")
    start = lines.index(_KEY) + 1
    end = start
    while end < len(lines) and (lines[end].startswith(_INDENT) or not lines[end]):
        end += 1
    text = yaml.safe_dump(cluster_config(serve_config), sort_keys=False)
    body = [(_INDENT + line).rstrip() for line in text.splitlines()]
    rayservice.write_text("\n".join([*lines[:start], *body, *lines[end:]]) + "\n")
    if not in_sync(serve_config, rayservice):
        raise RuntimeError(f"{rayservice}: serveConfigV2 still differs after the copy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    args = parser.parse_args(argv)
    if not SERVE_CONFIG.is_file():
        sys.stderr.write(f"{SERVE_CONFIG}: no Serve config to copy\n")
        return 1
    if args.check:
        if in_sync():
            return 0
        sys.stderr.write(
            f"{RAYSERVICE}: serveConfigV2 differs from {SERVE_CONFIG}; run "
            "python infra/kuberay/sync_serve_config.py\n"
        )
        return 1
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
