"""Promoting a bundle: a models root resolves to the bundle promoted last."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from iids.bundle import PROMOTED, promote, read_bundle_info, resolve_bundle
from iids.cli import app
from tests.builders import tiny_bundle


@pytest.fixture
def models(tmp_path):
    """A models root holding two bundles, the second written later."""
    root = tmp_path / "models"
    return root, tiny_bundle(root, seed=0), tiny_bundle(root, seed=1)


def _version(bundle: str) -> str:
    return bundle.rsplit("/", 1)[-1]


def test_a_root_resolves_to_the_promoted_bundle_and_promoting_an_older_one_rolls_back(
    models,
):
    root, first, second = models

    record = promote(second)
    assert resolve_bundle(str(root)) == second
    assert (record["version"], record["previous_version"]) == (_version(second), None)
    assert json.loads((root / PROMOTED).read_text())["bundle"] == second

    record = promote(first)
    assert resolve_bundle(str(root)) == first
    assert record["previous_version"] == _version(second)
    # A bundle resolves to itself, promoted or not.
    assert resolve_bundle(second) == second


def test_a_root_with_nothing_promoted_is_refused_naming_what_to_pass(models):
    root, first, second = models

    assert resolve_bundle(str(root)) == str(root)
    with pytest.raises(
        FileNotFoundError, match="is not a model bundle: missing"
    ) as err:
        read_bundle_info(resolve_bundle(str(root)))
    message = str(err.value)
    assert "models root holding 2 bundle(s)" in message
    assert _version(first) in message and _version(second) in message
    assert f"iids promote {root}/<version>" in message


def test_online_scoring_given_a_root_is_told_the_promoted_bundle_to_pass(models):
    root, first, _ = models
    promote(first)

    with pytest.raises(FileNotFoundError) as info:
        read_bundle_info(str(root))

    assert f"models root whose promoted bundle is {first}" in str(info.value)


def test_a_promoted_bundle_that_is_gone_names_the_version_and_the_fix(models):
    root, first, _ = models
    promote(first)
    (root / _version(first) / "model.json").unlink()

    with pytest.raises(FileNotFoundError) as info:
        resolve_bundle(str(root))

    message = str(info.value)
    assert f"promotes version '{_version(first)}'" in message
    assert f"iids promote {root}/<version>" in message


def test_a_damaged_pointer_names_the_file_and_what_was_expected(models):
    root, _, _ = models
    (root / PROMOTED).write_text('["not", "an object"]')
    with pytest.raises(
        ValueError, match=r"PROMOTED.json: expected a JSON object whose `version`"
    ):
        resolve_bundle(str(root))

    (root / PROMOTED).write_text('{"version": "../elsewhere"}')
    with pytest.raises(ValueError, match=r"found \{'version': '../elsewhere'\}"):
        resolve_bundle(str(root))

    (root / PROMOTED).write_text("{version:")
    with pytest.raises(ValueError, match=r"PROMOTED.json: not JSON"):
        resolve_bundle(str(root))


def test_promoting_something_that_is_not_a_bundle_writes_no_pointer(tmp_path):
    folder = tmp_path / "models" / "20260101T000000Z-abcdef"
    folder.mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="is not a model bundle: missing"):
        promote(str(folder))

    assert not (tmp_path / "models" / PROMOTED).exists()


def test_a_bundle_copied_under_another_name_cannot_be_promoted(models, tmp_path):
    import shutil

    _, first, _ = models
    copy = tmp_path / "elsewhere" / "best"
    shutil.copytree(first, copy)

    with pytest.raises(ValueError, match=r"found directory 'best', version"):
        promote(str(copy))


def test_cli_promote_says_what_it_replaced(models):
    root, first, second = models
    runner = CliRunner()

    run = runner.invoke(app, ["promote", first])
    assert run.exit_code == 0, run.output
    assert f"promoted {_version(first)} (test macro-F1 n/a; was none)" in run.output

    run = runner.invoke(app, ["promote", second])
    assert run.exit_code == 0, run.output
    assert f"was {_version(first)})" in run.output
    assert resolve_bundle(str(root)) == second

    run = runner.invoke(app, ["promote", str(root / "no-such-version")])
    assert run.exit_code == 1
    assert "no such model bundle" in run.output
