"""MLOBS_* environment settings: secure defaults and errors that name the variable."""

import dataclasses
from pathlib import Path

import pytest

from mlobs.settings import Settings, SettingsError
from tests.conftest import REPO


def test_defaults_are_the_secure_ones():
    settings = Settings.from_env({})
    assert settings.faults_enabled is False
    assert settings.log_raw_input is False
    assert settings.admin_token is None
    assert settings.log_file is None
    assert settings.max_body_bytes == 64 * 1024


# Each README variable, set to a value other than its default.
EVERY_VARIABLE = {
    "MLOBS_LOG_FILE": " /var/log/mlobs/x.log ",
    "MLOBS_LOG_MAX_BYTES": "1000",
    "MLOBS_LOG_BACKUP_COUNT": "3",
    "MLOBS_LOG_RAW_INPUT": "1",
    "MLOBS_FAULTS": "true",
    "MLOBS_ADMIN_TOKEN": " t ",
    "MLOBS_MAX_BODY_BYTES": "2048",
    "MLOBS_SPEC": " my-spec.yaml ",
    "MLOBS_PREDICT_CONCURRENCY": "4",
    "MLOBS_PREDICT_QUEUE": "0",
    "MLOBS_PREDICT_TIMEOUT_SECONDS": "2.5",
    "MLOBS_SHUTDOWN_GRACE_SECONDS": "40",
}


def test_every_variable_is_read_into_its_setting():
    """Each variable reaches its own field; spaces around a path or the token are dropped."""
    settings = Settings.from_env(EVERY_VARIABLE)
    assert settings == Settings(
        log_file=Path("/var/log/mlobs/x.log"),
        log_max_bytes=1000,
        log_backup_count=3,
        log_raw_input=True,
        faults_enabled=True,
        admin_token="t",
        max_body_bytes=2048,
        spec_path=Path("my-spec.yaml"),
        predict_concurrency=4,
        predict_queue=0,
        predict_timeout_seconds=2.5,
        shutdown_grace_seconds=40,
    )


def test_a_prediction_timeout_is_shorter_than_the_drain():
    # A timeout longer than the grace period would let one slow prediction cut a drain short.
    defaults = Settings()
    assert defaults.predict_timeout_seconds < defaults.shutdown_grace_seconds


# The whole message the server prints before it exits 3: the variable, its value as given, and
# what it should be, in words an operator can act on.
BAD_VALUES = {
    "flag": ("MLOBS_FAULTS", "maybe", "expected 1/0, true/false, yes/no or on/off"),
    "size not a number": ("MLOBS_LOG_MAX_BYTES", "ten", "expected a whole number"),
    "count with a fraction": ("MLOBS_PREDICT_QUEUE", "1.5", "expected a whole number"),
    "count below 1": ("MLOBS_LOG_BACKUP_COUNT", "0", "must be at least 1"),
    "queue below 0": ("MLOBS_PREDICT_QUEUE", "-1", "must be 0 or more"),
    "time not a number": ("MLOBS_PREDICT_TIMEOUT_SECONDS", "soon", "expected a number"),
    "time of 0": ("MLOBS_PREDICT_TIMEOUT_SECONDS", "0", "must be at least 0.001"),
    "time not finite": ("MLOBS_SHUTDOWN_GRACE_SECONDS", "nan", "must be at least 0.001"),
}


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES.values(), ids=BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_variable_and_what_it_should_be(name, value, expected):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: value})
    assert str(refused.value) == f"{name}={value!r}: {expected}"


def test_blank_values_take_the_defaults():
    """Compose and Kubernetes pass an unset variable as an empty one (`${VAR:-}`): blank means
    the default, never a refusal; a blank admin token is no token, not one anyone can send."""
    assert Settings.from_env(dict.fromkeys(EVERY_VARIABLE, "")) == Settings()
    assert Settings.from_env(dict.fromkeys(EVERY_VARIABLE, " \t")) == Settings()


def _readme_defaults() -> dict[str, str]:
    """Variable -> default as the README's Configuration table states it."""
    section = (REPO / "README.md").read_text().split("## Configuration", 1)[1]
    defaults: dict[str, str] = {}
    for row in section.strip().split("\n\n", 1)[0].splitlines()[2:]:
        names, values = row.split(" | ")[:2]
        names, values = names.strip("| "), values.strip()
        if not names.startswith("`MLOBS_"):  # the BLAS row: one default for three libraries
            continue
        for name, value in zip(names.split(", "), values.split(", "), strict=True):
            defaults[name.strip("`")] = value
    return defaults


def test_the_readme_states_the_defaults_the_server_uses():
    readme = _readme_defaults()
    defaults = Settings()
    for name, value in EVERY_VARIABLE.items():
        [field] = [
            f.name
            for f in dataclasses.fields(Settings)
            if getattr(Settings.from_env({name: value}), f.name) != getattr(defaults, f.name)
        ]
        default = getattr(defaults, field)
        stated = readme[name]
        if name == "MLOBS_SPEC":  # unset: the server reads ./observability.yaml if present
            assert (default, stated) == (None, "`./observability.yaml`")
        elif default is None or isinstance(default, bool):
            assert stated == {None: "unset", False: "0"}[default], name
        else:
            assert float(stated) == default, name
