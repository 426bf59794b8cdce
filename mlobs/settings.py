"""Runtime settings of an instrumented model server, read from MLOBS_* environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _number(env: Mapping[str, str], name: str, default: float, kind: type, minimum: float) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r}: expected {expected}") from None
    if not math.isfinite(value) or value < minimum:
        bound = "0 or more" if minimum == 0 else f"at least {minimum:g}"
        raise SettingsError(f"{name}={raw!r}: must be {bound}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int, 1)


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int, 0)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, 0.001)


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
    # Predictions running at once per process (the thread pool's size for a synchronous predict).
    # 8 keeps 2-8 cores busy with GIL-releasing work; raise it for models that wait on I/O.
    predict_concurrency: int = 8
    # Predictions waiting for a slot; past that /predict answers 503 at once. 32 behind 8 slots
    # is at most four predictions' time of waiting.
    predict_queue: int = 32
    # A caller gets 504 after this; well under the shutdown grace, so a drain is never cut short
    # by a prediction that is merely slow.
    predict_timeout_seconds: float = 10.0
    # On SIGTERM, predictions in flight get this long to finish. docker-compose.yml's
    # stop_grace_period (30s) and Kubernetes' default termination grace (30 s) leave 5 s more
    # for closing connections and flushing.
    shutdown_grace_seconds: float = 25.0

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
            # A blank token is no token (the faults_unprotected warning says so), not one that
            # any caller can send; loadgen strips the token file the same way.
            admin_token=env.get("MLOBS_ADMIN_TOKEN", "").strip() or None,
            max_body_bytes=_positive_int(env, "MLOBS_MAX_BODY_BYTES", cls.max_body_bytes),
            spec_path=Path(spec_path) if spec_path else None,
            predict_concurrency=_positive_int(
                env, "MLOBS_PREDICT_CONCURRENCY", cls.predict_concurrency
            ),
            predict_queue=_non_negative_int(env, "MLOBS_PREDICT_QUEUE", cls.predict_queue),
            predict_timeout_seconds=_seconds(
                env, "MLOBS_PREDICT_TIMEOUT_SECONDS", cls.predict_timeout_seconds
            ),
            shutdown_grace_seconds=_seconds(
                env, "MLOBS_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds
            ),
        )
