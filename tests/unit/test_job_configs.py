"""Job configs, job entry points and the pieces of `iids submit` that need no cluster."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from iids.config import ConfigError, TrainSettings
from iids.datasets import get_adapter
from iids.submit import (
    ENTRY_POINTS,
    EXIT_CODES,
    ScoreJobConfig,
    TrainJobConfig,
    build_runtime_env,
    job_entrypoint,
    load_job_config,
    local_auth_token,
    pinned_requirements,
    read_auth_token,
    require,
    submit,
    yesterday_utc,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "jobs" / "configs").glob("*.yaml"))
#: The job kind of each config that is not a training config.
KIND_OF = {"score-nightly.yaml": "score"}


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the shipped configs ------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    kind = KIND_OF.get(path.name, "train")

    config = load_job_config(kind, path)

    if kind == "train":
        settings = config.settings
        adapter = get_adapter(settings.dataset, encoding=settings.encoding)
        task = adapter.task(settings.task)
        assert len(task.classes) >= 2
        settings.model.build()  # the layer sizes fit together
        assert settings.per_worker_batch() >= 1


def test_cluster_configs_name_where_data_and_models_live():
    for name in ("ciciov2024.yaml", "edge-iiotset.yaml"):
        config = load_job_config("train", ROOT / "jobs" / "configs" / name)
        assert config.missing() == []
        assert config.data.startswith("s3://") and config.output.startswith("s3://")
    nightly = load_job_config("score", ROOT / "jobs" / "configs" / "score-nightly.yaml")
    assert nightly.missing() == [] and nightly.day is None  # default: yesterday


def test_train_config_splits_job_keys_from_settings(tmp_path):
    path = _write(tmp_path, "data: s3://b/d\noutput: s3://b/m\nepochs: 3\nseed: 7\n")

    config = load_job_config("train", path, run_name="r1", epochs=5)

    assert isinstance(config, TrainJobConfig)
    assert (config.data, config.output, config.run_name) == (
        "s3://b/d",
        "s3://b/m",
        "r1",
    )
    assert config.settings == TrainSettings(epochs=5, seed=7)


# -- errors name the key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "key"),
    [
        ("train", "epochz: 3\n", "epochz"),
        ("train", "epochs: 0\n", "epochs"),
        ("train", "model:\n  chanels: 8\n", "model.chanels"),
        ("train", "sampling:\n  ratio: 2.0\n", "sampling.ratio"),
        ("train", "data: [1, 2]\n", "data"),
        ("train", "settings:\n  epochs: 3\n", "settings"),
        ("score", "model: m\nnum_actors: 0\n", "num_actors"),
        ("score", "day: '2026-13-01'\n", "day"),
        ("score", "day: 31/01/2026\n", "day"),
        ("score", "dy: 2026-01-01\n", "dy"),
        ("ingest", "dataset: nope\n", "dataset"),
    ],
)
def test_bad_key_error_names_the_file_and_key(tmp_path, kind, text, key):
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError, match=rf"job\.yaml: .*\b{key}\b"):
        load_job_config(kind, path)


def test_unreadable_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_job_config("train", tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"job\.yaml: cannot read.*month"):
        load_job_config("score", _write(tmp_path, "day: 2026-13-01\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_job_config("train", _write(tmp_path, "- a\n- b\n"))


def test_unquoted_yaml_day_is_read_as_a_day(tmp_path):
    path = _write(tmp_path, "day: 2026-01-31\n")

    config = load_job_config("score", path)

    assert isinstance(config, ScoreJobConfig) and config.day == "2026-01-31"


def test_require_names_every_missing_key(tmp_path):
    config = load_job_config("score", _write(tmp_path, "model: m\n"))

    with pytest.raises(ConfigError, match=r"input, output: not set.*--input"):
        require(config, "job.yaml", "--input/--output")


def test_yesterday_is_taken_in_utc():
    # 00:30 on Feb 1 in UTC+2 is still Jan 31 in UTC: yesterday is Jan 30.
    now = dt.datetime(2026, 2, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    assert yesterday_utc(now) == "2026-01-30"


# -- entry points fail fast on a bad config, before Ray starts ----------------------------


@pytest.mark.parametrize("kind", sorted(ENTRY_POINTS))
def test_entry_point_rejects_bad_config_with_exit_2(tmp_path, caplog, kind):
    import importlib

    module = importlib.import_module(
        ENTRY_POINTS[kind].removesuffix(".py").replace("/", ".")
    )
    path = _write(tmp_path, "no_such_key: 1\n")

    with caplog.at_level(logging.ERROR):
        code = module.main(["--config", str(path)])

    assert code == 2
    assert "no_such_key" in caplog.text


def test_train_entry_point_needs_data_and_output(tmp_path, caplog):
    from jobs import train

    with caplog.at_level(logging.ERROR):
        code = train.main(["--config", str(_write(tmp_path, "epochs: 2\n"))])

    assert code == 2
    assert "data, output: not set" in caplog.text and "--data" in caplog.text


# -- what a submitted job carries ---------------------------------------------------------


def test_pinned_requirements_leave_ray_to_the_cluster():
    requirements = pinned_requirements(ROOT / "pyproject.toml")

    assert not any(r.startswith("ray") for r in requirements)
    assert "torch==2.13.0" in requirements
    assert all("==" in r for r in requirements)


def test_unpinned_requirement_is_refused(tmp_path):
    pyproject = _write(
        tmp_path, '[project]\ndependencies = ["numpy>=2"]\n', "pyproject.toml"
    )

    with pytest.raises(ValueError, match=r"'numpy>=2' is not pinned"):
        pinned_requirements(pyproject)


def test_runtime_env_ships_the_source_without_venv_or_runs():
    env = build_runtime_env(ROOT, env_vars={"IIDS_S3_ENDPOINT": "http://s3:8333"})
    bare = build_runtime_env(ROOT, install_pip=False)

    assert env["working_dir"] == str(ROOT)
    assert {".venv/", "runs/", ".git/", "tests/"} <= set(env["excludes"])
    assert "torch==2.13.0" in env["pip"]["packages"]
    assert env["env_vars"] == {"IIDS_S3_ENDPOINT": "http://s3:8333"}
    assert "pip" not in bare and "env_vars" not in bare


def test_entrypoint_runs_the_job_script_with_its_config():
    command = job_entrypoint(
        "score", "jobs/configs/score-nightly.yaml", ["--day", "2026-01-31"]
    )

    assert command == (
        "python jobs/score_nightly.py --config jobs/configs/score-nightly.yaml "
        "--day 2026-01-31"
    )
    assert job_entrypoint("train", "a b.yaml").endswith("--config 'a b.yaml'")


def test_exit_codes_are_non_zero_unless_the_job_succeeded():
    assert EXIT_CODES == {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 2}


def test_local_token_goes_only_to_a_loopback_address(tmp_path):
    token_file = _write(tmp_path, "s3cret\n", "auth_token")

    assert local_auth_token("http://127.0.0.1:8265", token_file) == "s3cret"
    assert local_auth_token("http://localhost:8265", token_file) == "s3cret"
    assert local_auth_token("http://10.0.0.5:8265", token_file) is None
    assert local_auth_token("http://head.example.com:8265", token_file) is None
    assert local_auth_token("http://127.0.0.1:8265", tmp_path / "none") is None
    assert read_auth_token(token_file) == "s3cret"
    with pytest.raises(FileNotFoundError, match="ray get-auth-token"):
        read_auth_token(tmp_path / "none")


@pytest.fixture
def project(tmp_path) -> Path:
    """A minimal project checkout: pyproject.toml and jobs/configs/."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "jobs" / "configs").mkdir(parents=True)
    return tmp_path


def test_submit_rejects_a_bad_key_before_contacting_the_cluster(project):
    config = _write(project / "jobs" / "configs", "data: d\noutput: o\nepochz: 3\n")

    # Port 9 (discard) answers nothing: the error must come before any connection.
    with pytest.raises(ConfigError, match="epochz"):
        submit("train", "http://127.0.0.1:9", config, project_root=project)


def test_submit_rejects_a_config_outside_the_project(project, tmp_path_factory):
    outside = _write(tmp_path_factory.mktemp("elsewhere"), "data: d\noutput: o\n")

    with pytest.raises(ConfigError, match="inside the project"):
        submit("train", "http://127.0.0.1:9", outside, project_root=project)


def test_submit_names_missing_keys_unless_job_args_supply_them(project):
    config = _write(project / "jobs" / "configs", "epochs: 2\n")

    with pytest.raises(ConfigError, match="data, output: not set"):
        submit("train", "http://127.0.0.1:9", config, project_root=project)


def test_cli_submit_refuses_an_unknown_job_kind():
    from typer.testing import CliRunner

    from iids.cli import app

    run = CliRunner().invoke(
        app,
        [
            "submit",
            "deploy",
            "--address",
            "http://127.0.0.1:9",
            "--config",
            str(CONFIGS[0]),
        ],
    )

    assert run.exit_code == 1
    assert "expected train, score or ingest" in run.output


def test_job_config_yaml_round_trips(tmp_path):
    config = load_job_config("train", ROOT / "jobs" / "configs" / "ciciov2024.yaml")
    flat = {
        **config.settings.model_dump(mode="json"),
        **{k: getattr(config, k) for k in TrainJobConfig.JOB_KEYS},
    }

    again = load_job_config("train", _write(tmp_path, yaml.safe_dump(flat)))

    assert again == config
