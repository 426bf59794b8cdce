"""Rotation versus globs: Filebeat's `paths` match every file name the log rotation produces, and
no unrelated file.

Filebeat's docs require `paths` to cover rotated files: after a Filebeat restart, or when the
output was blocked past the inactivity close, the unread rest of a file renamed in the meantime is
found only through a glob that matches its new name. The filestream scanner expands each path with
Go's filepath.Glob (elastic/beats filebeat/input/filestream/fswatch.go, fileScanner.GetFiles);
its syntax is Go's path/filepath Match, reproduced below, not Python's fnmatch (whose `*` also
crosses `/` and whose negation is `[!...]`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlobs.logs import RotatingFile
from mlobs.settings import Settings
from tests.support.stack_files import compose, filebeat_input

LOG_DIR = "/var/log/mlobs"  # where compose mounts the shared volume, in every container


def go_glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax as a regular expression (Separator '/')."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                raise NotImplementedError("** (Filebeat's recursive_glob) is not modelled here")
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            ranges = "".join(re.escape(ch) if ch != "-" else "-" for ch in body)
            out.append(f"[{'^/' if negate else ''}{ranges}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _globs() -> list[re.Pattern[str]]:
    return [go_glob_regex(path) for path in filebeat_input()["paths"]]


def _read_by_filebeat(name: str) -> bool:
    return any(glob.fullmatch(f"{LOG_DIR}/{name}") for glob in _globs())


def _stack_backups() -> int:
    """MLOBS_LOG_BACKUP_COUNT of the compose model servers, or the library's default."""
    counts = {
        int(service["environment"].get("MLOBS_LOG_BACKUP_COUNT", Settings.log_backup_count))
        for service in compose()["services"].values()
        if "MLOBS_LOG_FILE" in (service.get("environment") or {})
    }
    assert counts, "no model server writes a log file in docker-compose.yml"
    return max(counts)


def _rotate(directory: Path, backups: int, rotations: int) -> set[str]:
    """Every file name the real RotatingFile produces while it rotates `rotations` times."""
    log = RotatingFile(directory / "anomaly-detector.log", max_bytes=100, backups=backups)
    names: set[str] = set()
    line = b'{"message":"inference","pad":"' + b"x" * 60 + b'"}\n'
    try:
        for _ in range(rotations + 1):
            log.write(line)
            names |= {path.name for path in directory.iterdir()}
    finally:
        log.close()
    assert len(names) == backups + 1  # it did rotate through every backup
    return names


@pytest.mark.parametrize("backups", [_stack_backups(), 12])
def test_every_name_the_rotation_produces_is_read(tmp_path, backups):
    names = _rotate(tmp_path, backups, rotations=backups + 3)
    missed = sorted(name for name in names if not _read_by_filebeat(name))
    assert not missed, f"filebeat.yml paths miss {missed}: their unread lines would be lost"


def test_the_globs_cover_every_backup_the_stack_keeps():
    covered = 0
    while _read_by_filebeat(f"chatbot.log.{covered + 1}"):
        covered += 1
    assert covered >= _stack_backups(), f"backups above .{covered} are never read"
    assert covered >= Settings.log_backup_count


@pytest.mark.parametrize(
    "name",
    [
        "chatbot.log.1.gz",  # compressed by someone else: binary to a line reader
        "chatbot.log.swp",
        "chatbot.log.tmp",
        "chatbot.log.0",
        "chatbot.log.1~",
        "chatbot.json",
        "notes.txt",
        "sub/chatbot.log",  # Go's * does not cross a directory
    ],
)
def test_no_unrelated_file_is_read(name):
    assert not _read_by_filebeat(name)


def test_the_glob_model_follows_go_not_fnmatch():
    assert go_glob_regex("/d/*.log").fullmatch("/d/a.b.log")
    assert not go_glob_regex("/d/*.log").fullmatch("/d/sub/a.log")
    assert go_glob_regex("/d/x.[^0-9]").fullmatch("/d/x.a")
    assert not go_glob_regex("/d/x.[^0-9]").fullmatch("/d/x.1")
    assert go_glob_regex("/d/x.[1-9][0-9]").fullmatch("/d/x.10")
