"""Static checks of infra/: manifests parse, point at real files, and match the pins.

Nothing here talks to Kubernetes or AWS: the KubeRay manifests are checked for the
fields this project relies on, the Serve config against Ray's own deploy schema, and
the cluster launcher config against Ray's own launcher schema.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iids.submit import ENTRY_POINTS, load_job_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
KUBERAY = INFRA / "kuberay"
SERVE_CONFIG = ROOT / "serve" / "config.yaml"
#: Where the image keeps the project (infra/docker/Dockerfile's WORKDIR).
IMAGE_ROOT = "/home/ray/iids/"

YAML_FILES = sorted(
    [*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml"), *ROOT.glob("jobs/configs/*.yaml")]
)


def _pins() -> tuple[str, str]:
    """(Ray version, Python tag like `py311`) from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    ray = next(d for d in project["dependencies"] if re.match(r"ray\b", d))
    ray_version = ray.split("==")[1]
    major, minor = re.search(r">=\s*(\d+)\.(\d+)", project["requires-python"]).groups()
    assert f"<{major}.{int(minor) + 1}" in project["requires-python"], (
        "requires-python must pin one minor Python version"
    )
    return ray_version, f"py{major}{minor}"


RAY_VERSION, PY_TAG = _pins()


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object under infra/kuberay, with the RayJob of the ConfigMap."""
    docs = [d for p in sorted(KUBERAY.glob("*.yaml")) for d in _docs(p)]
    for doc in list(docs):
        if doc["kind"] == "ConfigMap":
            docs += [yaml.safe_load(text) for text in doc["data"].values()]
    return docs


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _manifests() if d["kind"] == kind]


def _cluster_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner name, RayCluster spec) of the RayCluster, RayJob and RayService."""
    for doc in _manifests():
        name = doc["metadata"].get("name") or doc["metadata"].get("generateName")
        spec = doc.get("spec", {})
        if doc["kind"] == "RayCluster":
            yield name, spec
        elif doc["kind"] == "RayJob" and "rayClusterSpec" in spec:
            yield name, spec["rayClusterSpec"]
        elif doc["kind"] == "RayService":
            yield name, spec["rayClusterConfig"]


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in _cluster_specs():
        yield f"{name}/head", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{name}/{group['groupName']}", group["template"]


def _entrypoints() -> list[str]:
    return [d["spec"]["entrypoint"] for d in _of_kind("RayJob")]


def _serve_module():
    spec = importlib.util.spec_from_file_location(
        "sync_serve_config", KUBERAY / "sync_serve_config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- every file parses --------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    assert _docs(path), f"{path} holds no YAML document"


def test_the_expected_infra_files_exist():
    for rel in (
        "kuberay/raycluster.yaml",
        "kuberay/rayjob-train.yaml",
        "kuberay/rayservice.yaml",
        "kuberay/cronjob-score-nightly.yaml",
        "aws/cluster.yaml",
        "docker/Dockerfile",
        "local/start.sh",
        "local/stop.sh",
        "README.md",
    ):
        assert (INFRA / rel).is_file(), rel


def test_embedded_yaml_parses():
    for doc in _of_kind("ConfigMap"):
        for key, text in doc["data"].items():
            assert isinstance(yaml.safe_load(text), dict), key
    for doc in _of_kind("RayService"):
        assert isinstance(yaml.safe_load(doc["spec"]["serveConfigV2"]), dict)


# -- KubeRay ------------------------------------------------------------------------------


def test_manifests_use_the_kuberay_v1_api():
    kinds = {d["kind"] for d in _manifests()}

    assert {"RayCluster", "RayJob", "RayService", "CronJob"} <= kinds
    for doc in _manifests():
        if doc["kind"].startswith("Ray"):
            assert doc["apiVersion"] == "ray.io/v1", doc["kind"]


def test_raycluster_has_head_cpu_and_gpu_groups_with_autoscaling():
    (cluster,) = _of_kind("RayCluster")
    spec = cluster["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}

    assert spec["enableInTreeAutoscaling"] is True
    assert set(groups) == {"cpu", "gpu"}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu_limits["limits"]["nvidia.com/gpu"] == "1"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_worker_group_bounds_are_consistent():
    for name, spec in _cluster_specs():
        for group in spec.get("workerGroupSpecs", []):
            low, want, high = (
                group["minReplicas"],
                group["replicas"],
                group["maxReplicas"],
            )
            assert 0 <= low <= want <= high, f"{name}/{group['groupName']}"
            assert high > low or not spec.get("enableInTreeAutoscaling"), name


def test_every_container_sets_resources_and_a_pinned_image():
    containers = [
        (where, c)
        for where, template in _pod_templates()
        for c in template["spec"]["containers"]
    ]
    for doc in _of_kind("RayJob"):
        template = doc["spec"].get("submitterPodTemplate")
        if template:
            containers += [("submitter", c) for c in template["spec"]["containers"]]
    for doc in _of_kind("CronJob"):
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        containers += [("cronjob", c) for c in pod["containers"]]

    assert containers
    for where, container in containers:
        resources = container["resources"]
        assert resources["requests"] and resources["limits"], where
        image = container["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{where}: {image} has no tag"
        assert not image.endswith((":latest", ":nightly")), f"{where}: {image}"


def test_ray_pods_read_s3_credentials_from_the_secret():
    secret = next(
        d for d in _docs(KUBERAY / "secret-s3.example.yaml") if d["kind"] == "Secret"
    )
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])

    for where, template in _pod_templates():
        for container in template["spec"]["containers"]:
            refs = [
                e["secretRef"]["name"]
                for e in container.get("envFrom", [])
                if "secretRef" in e
            ]
            assert secret["metadata"]["name"] in refs, where


def test_rayjob_entrypoints_name_real_scripts_and_valid_configs():
    entrypoints = _entrypoints()
    assert len(entrypoints) >= 2  # training and the nightly scoring

    for entrypoint in entrypoints:
        words = entrypoint.split()
        assert words[0] == "python", entrypoint
        script = words[1].removeprefix(IMAGE_ROOT)
        assert (ROOT / script).is_file(), f"{entrypoint}: no {script}"
        kind = {v: k for k, v in ENTRY_POINTS.items()}[script]
        config = words[words.index("--config") + 1].removeprefix(IMAGE_ROOT)
        assert (ROOT / config).is_file(), f"{entrypoint}: no {config}"
        job = load_job_config(kind, ROOT / config)
        assert job.missing() == [], f"{config}: a cluster job needs {job.missing()}"


def test_nightly_cronjob_creates_a_rayjob_on_the_long_running_cluster():
    (cron,) = _of_kind("CronJob")
    (cluster,) = _of_kind("RayCluster")
    (configmap,) = _of_kind("ConfigMap")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    rayjob = yaml.safe_load(configmap["data"]["rayjob.yaml"])
    (role,) = _of_kind("Role")

    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert container["args"][:2] == ["create", "-f"]
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["args"][2] == f"{mount}/rayjob.yaml"
    assert pod["volumes"][0]["configMap"]["name"] == configmap["metadata"]["name"]
    assert rayjob["metadata"]["generateName"]  # a new RayJob each night
    assert (
        rayjob["spec"]["clusterSelector"]["ray.io/cluster"]
        == cluster["metadata"]["name"]
    )
    assert "score_nightly.py" in rayjob["spec"]["entrypoint"]
    assert pod["serviceAccountName"] == role["metadata"]["name"]
    assert "create" in role["rules"][0]["verbs"]
    assert role["rules"][0]["resources"] == ["rayjobs"]


# -- Serve --------------------------------------------------------------------------------


def _serve_config() -> dict[str, Any]:
    if not SERVE_CONFIG.is_file():
        pytest.skip(f"{SERVE_CONFIG} is not written yet")
    return yaml.safe_load(SERVE_CONFIG.read_text())


def _app_deployment_names(import_path: str) -> set[str]:
    """The deployments of the application an import path names, by importing it."""
    from ray.serve import Application

    module_name, _, attr = import_path.replace(":", ".").rpartition(".")
    target = getattr(importlib.import_module(module_name), attr)
    if callable(target) and not isinstance(target, Application):
        target = target({})  # an application builder
    names, todo = set(), [target]
    while todo:
        app = todo.pop()
        bound = app._bound_deployment
        names.add(bound.name)
        args = [*bound.init_args, *bound.init_kwargs.values()]
        todo += [a for a in args if isinstance(a, Application)]
    return names


def test_serve_config_validates_against_rays_deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(_serve_config())
    for doc in _of_kind("RayService"):
        ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))


def test_serve_config_names_the_apps_real_deployments():
    config = _serve_config()

    for app in config["applications"]:
        module = app["import_path"].replace(":", ".").rpartition(".")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
        configured = {d["name"] for d in app.get("deployments", [])}
        real = _app_deployment_names(app["import_path"])
        assert configured <= real, f"{app['name']}: {configured - real} not in the app"


def test_rayservice_carries_the_serve_config():
    _serve_config()
    sync = _serve_module()

    assert sync.in_sync(), (
        "infra/kuberay/rayservice.yaml differs from serve/config.yaml; run "
        "python infra/kuberay/sync_serve_config.py"
    )


# -- versions match pyproject.toml --------------------------------------------------------


def test_manifests_pin_the_ray_and_python_versions():
    for name, spec in _cluster_specs():
        assert spec["rayVersion"] == RAY_VERSION, name
    for where, template in _pod_templates():
        for container in template["spec"]["containers"]:
            tag = container["image"].rsplit(":", 1)[1]
            assert f"ray{RAY_VERSION}-{PY_TAG}" in tag, f"{where}: {container['image']}"
            gpu = "nvidia.com/gpu" in container["resources"]["limits"]
            assert tag.endswith("-gpu") == gpu, f"{where}: {container['image']}"


def test_dockerfile_builds_on_the_pinned_ray_image():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", text, re.MULTILINE))

    assert args["RAY_VERSION"] == RAY_VERSION
    assert args["PYTHON_TAG"] == PY_TAG
    assert re.search(
        r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}\$\{VARIANT\}$",
        text,
        re.MULTILINE,
    )
    assert re.search(r"^WORKDIR " + IMAGE_ROOT.rstrip("/") + "$", text, re.MULTILINE)
    for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
        for source in line.split()[:-1]:
            if source.startswith("--"):
                continue
            if source == "README.md" and not (ROOT / source).exists():
                pytest.skip("README.md is not written yet (the image build needs it)")
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_launcher_config_is_valid_for_rays_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((INFRA / "aws" / "cluster.yaml").read_text())

    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert set(types) == {"head", "cpu", "gpu"}
    assert types["gpu"]["resources"]["GPU"] >= 1
    for name in ("cpu", "gpu"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"]
    assert config["max_workers"] >= types["cpu"]["max_workers"]


def test_launcher_config_pins_ray_and_python():
    config = yaml.safe_load((INFRA / "aws" / "cluster.yaml").read_text())
    images = [config["docker"]["image"]] + [
        t["docker"]["worker_image"]
        for t in config["available_node_types"].values()
        if "docker" in t
    ]
    setup = " ".join(config["setup_commands"])

    for image in images:
        assert re.fullmatch(rf"rayproject/ray:{RAY_VERSION}-{PY_TAG}(-gpu)?", image)
    assert f"'{RAY_VERSION}'" in setup
    assert f"({PY_TAG[2]}, {PY_TAG[3:]})" in setup
    assert "pip install" in setup and "/home/ray/iids" in setup
    assert config["file_mounts"]["/home/ray/iids"] == "."


# -- the local stack ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["start.sh", "stop.sh"])
def test_local_scripts_are_executable_bash(name):
    path = INFRA / "local" / name

    assert path.stat().st_mode & 0o111, f"{path} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_local_start_runs_seaweedfs_on_loopback_and_exports_settings():
    text = (INFRA / "local" / "start.sh").read_text()

    assert 'weed" mini -dir=' in text
    assert "-ip=127.0.0.1 -ip.bind=127.0.0.1" in text
    assert 'ray" start --head' in text
    for name in (
        "IIDS_S3_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RAY_ADDRESS",
        "RAY_API_SERVER_ADDRESS",
    ):
        assert f"export {name}=" in text
