"""The JSON line sink: every line reaches stdout and the file, in order, within a loop turn."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import structlog

from mlobs.logs import JsonLinesSink, RotatingFile, configure_logging, flush_logs, get_logger
from mlobs.settings import Settings, SettingsError
from tests.conftest import REPO


@pytest.fixture
def sink(tmp_path: Path) -> JsonLinesSink:
    sink = JsonLinesSink()
    sink.open(Settings(log_file=tmp_path / "app.log"))
    return sink


def test_outside_an_event_loop_every_line_is_written_at_once(sink, capfd, tmp_path):
    sink.write_line(b'{"n":1}\n')
    assert capfd.readouterr().out == '{"n":1}\n'
    assert (tmp_path / "app.log").read_bytes() == b'{"n":1}\n'


def test_in_an_event_loop_the_lines_of_one_turn_are_written_together(sink, capfd, tmp_path):
    lines = '{"n":0}\n{"n":1}\n{"n":2}\n'
    log_file = tmp_path / "app.log"

    async def requests() -> tuple[str, str]:
        for line in lines.splitlines(keepends=True):
            sink.write_line(line.encode())
        during_the_turn = capfd.readouterr().out, log_file.read_text()
        await asyncio.sleep(0)  # the loop's next turn
        return during_the_turn

    assert asyncio.run(requests()) == ("", "")
    assert capfd.readouterr().out == lines
    assert log_file.read_text() == lines


def test_a_line_written_outside_the_loop_keeps_the_order(sink, capfd):
    async def queued() -> None:
        sink.write_line(b"first\n")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(queued())  # returns before the loop's next turn runs the flush
    finally:
        loop.close()  # the scheduled flush never runs
    sink.write_line(b"second\n")
    assert capfd.readouterr().out == "first\nsecond\n"


def test_flush_writes_what_is_queued(sink, capfd):
    async def queue_and_flush() -> str:
        sink.write_line(b"line\n")
        sink.flush()
        return capfd.readouterr().out

    assert asyncio.run(queue_and_flush()) == "line\n"


def test_lines_from_many_threads_and_loops_are_all_written_whole(sink, capfd, tmp_path):
    def writer(n: int) -> None:
        async def lines() -> None:
            for i in range(2000):
                sink.write_line(b'{"thread":%d,"i":%d}\n' % (n, i))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let this loop's flush run now and then

        asyncio.run(lines())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    sink.flush()
    written = (tmp_path / "app.log").read_text().splitlines()
    assert sorted(written) == sorted(
        f'{{"thread":{n},"i":{i}}}' for n in range(4) for i in range(2000)
    )
    capfd.readouterr()


def test_a_full_disk_loses_file_lines_but_not_stdout_nor_the_caller(capfd):
    sink = JsonLinesSink()
    sink.open(Settings(log_file=Path("/dev/full")))  # every write fails with ENOSPC
    sink.write_line(b'{"n":1}\n')
    sink.write_line(b'{"n":2}\n')
    captured = capfd.readouterr()
    assert captured.out == '{"n":1}\n{"n":2}\n'
    [complaint] = captured.err.splitlines()  # said once, not per line
    assert "/dev/full" in complaint and "No space left on device" in complaint


def test_log_files_are_readable_by_filebeats_group_only(tmp_path):
    """docker-compose.yml gives Filebeat the mlobs group, not the user (test_compose.py checks
    that group): the log file and every rotated one are rw-r----- (whatever the umask would
    allow more of), since raw input may be logged and nobody else should read it."""
    path = tmp_path / "inference.log"
    previous_umask = os.umask(0)
    try:
        log = RotatingFile(path, max_bytes=10, backups=2)
        log.write(b"a" * 9 + b"\n")
        log.write(b"b" * 9 + b"\n")  # rotates: inference.log.1 and a new inference.log
        log.close()
    finally:
        os.umask(previous_umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"inference.log": 0o640, "inference.log.1": 0o640}


def test_a_log_file_that_cannot_be_opened_is_refused_and_the_old_one_kept(sink, capfd, tmp_path):
    """The server stops at start with this message (exit 3); a sink that was writing goes on
    writing to its file."""
    unusable = tmp_path / "logs"
    unusable.mkdir()  # a directory where the file should be
    with pytest.raises(SettingsError) as refused:
        sink.open(Settings(log_file=unusable))
    assert str(refused.value) == (
        f"MLOBS_LOG_FILE={unusable}: cannot open: [Errno 21] Is a directory: '{unusable}'"
    )
    sink.write_line(b'{"n":1}\n')
    assert (tmp_path / "app.log").read_bytes() == b'{"n":1}\n'
    assert capfd.readouterr().out == '{"n":1}\n'


def test_a_write_cut_short_by_signals_is_finished(monkeypatch):
    """A signal that reaches the process while it writes to a full pipe (stdout read by a slow
    collector) ends the write early; the rest of the lines must still go out, in order."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # full quickly
    data = b'{"message":"inference"}\n' * 40_000  # about 1 MiB of lines
    received = bytearray()
    writing = threading.Event()

    def read_slowly() -> None:
        while chunk := os.read(read_end, 8192):
            received.extend(chunk)
            time.sleep(0.0002)

    def signal_the_writer() -> None:
        while writing.is_set():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            time.sleep(0.0005)

    real_write, short = os.write, []

    def observed_write(fd: int, chunk: bytes) -> int:
        written = real_write(fd, chunk)
        if written < len(chunk):
            short.append(written)
        return written

    monkeypatch.setattr(os, "write", observed_write)
    stdout = os.fdopen(write_end, "wb", buffering=0)
    monkeypatch.setattr(sys, "stdout", stdout)
    sink = JsonLinesSink()  # stdout only
    deadline = time.monotonic() + 10

    def bounded(_sig: int, _frame: object) -> None:
        # A write that never ends fails the test; not with an OSError, which the sink would
        # take for a failed write and swallow.
        if time.monotonic() > deadline:
            raise AssertionError("the lines were not written within 10 s")

    previous = signal.signal(signal.SIGUSR1, bounded)
    reader = threading.Thread(target=read_slowly)
    signaller = threading.Thread(target=signal_the_writer)
    writing.set()
    reader.start()
    signaller.start()
    try:
        sink.write_line(data)
    finally:
        writing.clear()
        signaller.join(timeout=10)
        stdout.close()
        reader.join(timeout=10)
        os.close(read_end)
        signal.signal(signal.SIGUSR1, previous)
    assert short, "no write was cut short: the test did not test anything"
    assert bytes(received) == data


def test_a_failing_destination_is_reported_when_it_fails_and_when_it_works_again(
    monkeypatch, capfd
):
    """Once per outage, not once per line: a stdout that fails, works again (here a stream
    without a file descriptor, as under a test runner), then fails again."""
    sink = JsonLinesSink()
    with open("/dev/full", "wb", buffering=0) as full:  # every write fails with ENOSPC
        monkeypatch.setattr(sys, "stdout", full)
        sink.write_line(b'{"n":1}\n')
        sink.write_line(b'{"n":2}\n')
        memory = io.StringIO()
        monkeypatch.setattr(sys, "stdout", memory)
        sink.write_line(b'{"n":3}\n')
        monkeypatch.setattr(sys, "stdout", full)
        sink.write_line(b'{"n":4}\n')
    lost = (
        "mlobs: cannot write to stdout: [Errno 28] No space left on device; its log lines are lost"
    )
    assert capfd.readouterr().err.splitlines() == [lost, "mlobs: writing to stdout again", lost]
    assert memory.getvalue() == '{"n":3}\n'


def test_lines_reach_a_pipe_at_once_even_when_python_buffers_stdout(tmp_path):
    """Without PYTHONUNBUFFERED (the default outside our images), Python holds what is printed
    to a pipe until its buffer fills; log lines bypass it, so a collector reading the pipe gets
    each line while the server runs."""
    script = (
        "import time\n"
        "from mlobs.logs import configure_logging, get_logger\n"
        "from mlobs.settings import Settings\n"
        "configure_logging(Settings())\n"
        "get_logger().info('server_ready')\n"
        "time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=REPO
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 20)
        assert ready, "no line within 20 s while the process runs"
        assert json.loads(server.stdout.readline())["message"] == "server_ready"
    finally:
        server.kill()
        server.wait(timeout=10)
        server.stdout.close()


def test_the_log_files_directories_are_created(tmp_path):
    """MLOBS_LOG_FILE may name a directory that does not exist yet, however deep."""
    path = tmp_path / "var" / "log" / "mlobs" / "inference.log"
    sink = JsonLinesSink()
    sink.open(Settings(log_file=path))
    sink.write_line(b'{"n":1}\n')
    assert path.read_bytes() == b'{"n":1}\n'


def test_events_from_info_up_are_written_with_their_level_and_context(capfd):
    """get_logger's events, as the servers and a user's own code write them: debug is dropped."""
    # From structlog's defaults, as in a new process: configure() leaves a setting passed as None
    # as it was, so an earlier configuration would hide a missing one.
    structlog.reset_defaults()
    configure_logging(Settings())
    log = get_logger(model="chatbot")
    log.debug("cache_miss")
    log.info("server_ready", predict_mode="inline")
    log.warning("faults_unprotected")
    flush_logs()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [(e["message"], e["level"], e["model"], e.get("predict_mode")) for e in lines] == [
        ("server_ready", "info", "chatbot", "inline"),
        ("faults_unprotected", "warning", "chatbot", None),
    ]
