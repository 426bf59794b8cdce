"""MLOBS_* environment settings: secure defaults and errors that name the variable."""

from pathlib import Path

import pytest

from mlobs.settings import Settings, SettingsError


def test_defaults_are_the_secure_ones():
    settings = Settings.from_env({})
    assert settings.faults_enabled is False
    assert settings.log_raw_input is False
    assert settings.admin_token is None
    assert settings.log_file is None
    assert settings.max_body_bytes == 64 * 1024


def test_values_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "MLOBS_LOG_FILE": "/var/log/mlobs/x.log",
            "MLOBS_LOG_MAX_BYTES": "1000",
            "MLOBS_LOG_BACKUP_COUNT": "3",
            "MLOBS_FAULTS": "true",
            "MLOBS_ADMIN_TOKEN": "t",
            "MLOBS_LOG_RAW_INPUT": "1",
        }
    )
    assert settings.log_file == Path("/var/log/mlobs/x.log")
    assert (settings.log_max_bytes, settings.log_backup_count) == (1000, 3)
    assert (settings.faults_enabled, settings.log_raw_input) == (True, True)
    assert settings.admin_token == "t"


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
    names = [
        "MLOBS_LOG_FILE", "MLOBS_LOG_MAX_BYTES", "MLOBS_LOG_BACKUP_COUNT", "MLOBS_LOG_RAW_INPUT",
        "MLOBS_FAULTS", "MLOBS_ADMIN_TOKEN", "MLOBS_MAX_BODY_BYTES", "MLOBS_SPEC",
        "MLOBS_PREDICT_CONCURRENCY", "MLOBS_PREDICT_QUEUE", "MLOBS_PREDICT_TIMEOUT_SECONDS",
        "MLOBS_SHUTDOWN_GRACE_SECONDS",
    ]  # fmt: skip
    assert Settings.from_env(dict.fromkeys(names, "")) == Settings()
    assert Settings.from_env(dict.fromkeys(names, " \t")) == Settings()


def test_serving_limits_are_read_and_checked():
    settings = Settings.from_env(
        {
            "MLOBS_PREDICT_CONCURRENCY": "4",
            "MLOBS_PREDICT_QUEUE": "0",
            "MLOBS_PREDICT_TIMEOUT_SECONDS": "2.5",
            "MLOBS_SHUTDOWN_GRACE_SECONDS": "40",
        }
    )
    assert settings.predict_concurrency == 4 and settings.predict_queue == 0
    assert settings.predict_timeout_seconds == 2.5 and settings.shutdown_grace_seconds == 40
    # A timeout longer than the grace period would let one slow prediction cut a drain short.
    defaults = Settings()
    assert defaults.predict_timeout_seconds < defaults.shutdown_grace_seconds
