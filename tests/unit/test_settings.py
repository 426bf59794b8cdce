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


@pytest.mark.parametrize(
    ("name", "value"),
    [("MLOBS_FAULTS", "maybe"), ("MLOBS_LOG_MAX_BYTES", "ten"), ("MLOBS_LOG_BACKUP_COUNT", "0")],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLOBS_PREDICT_CONCURRENCY", "0"),
        ("MLOBS_PREDICT_QUEUE", "-1"),
        ("MLOBS_PREDICT_TIMEOUT_SECONDS", "0"),
        ("MLOBS_PREDICT_TIMEOUT_SECONDS", "soon"),
        ("MLOBS_SHUTDOWN_GRACE_SECONDS", "nan"),
    ],
)
def test_bad_serving_limits_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
