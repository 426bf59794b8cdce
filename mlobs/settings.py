"""Runtime settings of an instrumented model server, read from MLOBS_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An MLOBS_* variable has a value that cannot be used; the message names the variable."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={env[name]!r}: expected 1/0, true/false, yes/no or on/off")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: must be greater than 0")
    return value


@dataclass(frozen=True)
class Settings:
    """What an operator can change without touching code. Defaults are the secure ones."""

    log_file: Path | None = None
    # 50 MiB x 5 files bounds the disk a busy server can fill before Filebeat ships the lines.
    log_max_bytes: int = 50 * 1024 * 1024
    log_backup_count: int = 5
    # Raw user input (chat messages) is personal data: it stays out of logs unless opted in.
    log_raw_input: bool = False
    faults_enabled: bool = False
    admin_token: str | None = None
    # Largest legitimate request is a few hundred bytes; 64 KiB leaves room and stops abuse early.
    max_body_bytes: int = 64 * 1024
    spec_path: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment; raise SettingsError naming a bad variable."""
        env = os.environ if env is None else env
        log_file = env.get("MLOBS_LOG_FILE", "").strip()
        spec_path = env.get("MLOBS_SPEC", "").strip()
        return cls(
            log_file=Path(log_file) if log_file else None,
            log_max_bytes=_positive_int(env, "MLOBS_LOG_MAX_BYTES", cls.log_max_bytes),
            log_backup_count=_positive_int(env, "MLOBS_LOG_BACKUP_COUNT", cls.log_backup_count),
            log_raw_input=_flag(env, "MLOBS_LOG_RAW_INPUT"),
            faults_enabled=_flag(env, "MLOBS_FAULTS"),
            admin_token=env.get("MLOBS_ADMIN_TOKEN") or None,
            max_body_bytes=_positive_int(env, "MLOBS_MAX_BODY_BYTES", cls.max_body_bytes),
            spec_path=Path(spec_path) if spec_path else None,
        )
