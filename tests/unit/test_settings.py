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
    assert settings.faults_enabled and settings.log_raw_input and settings.admin_token == "t"


@pytest.mark.parametrize(
    ("name", "value"),
    [("MLOBS_FAULTS", "maybe"), ("MLOBS_LOG_MAX_BYTES", "ten"), ("MLOBS_LOG_BACKUP_COUNT", "0")],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
