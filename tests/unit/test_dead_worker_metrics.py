"""Which workers' live gauges a multiprocess scrape forgets: the dead ones, and only those.

A worker keeps its gauges in files named after its pid in the multiprocess directory;
prometheus_client sums the `livesum` ones over every file present. Here the files of another
worker are written in process by giving prometheus_client that worker's pid.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess, values

from mlobs.metrics import ModelMetrics, forget_dead_workers
from tests.support.http import metric_samples, sample

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
SLOW = {"model": "slow-model"}
NOBODY = 65534


@pytest.fixture
def files_closed() -> Iterator[None]:
    yield
    values.close_all_multiprocess_files()


def _worker_with_a_prediction_in_flight(
    directory: Path, pid: int, monkeypatch: pytest.MonkeyPatch
) -> ModelMetrics:
    """The metrics of worker `pid` keeping its files in `directory`, one prediction in flight."""
    monkeypatch.setenv(MULTIPROC, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
    metrics = ModelMetrics(CollectorRegistry(), SLOW["model"], "1.0.0", ["done"])
    metrics.started()
    return metrics


def _in_flight(directory: Path) -> float:
    """model_requests_in_flight as a scrape of `directory` sums it (0 when no file has it)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    exposition = generate_latest(registry).decode()
    return metric_samples(exposition).get(("model_requests_in_flight", frozenset(SLOW.items())), 0)


def _dead_pid() -> int:
    with subprocess.Popen(["true"]) as child:
        child.wait(timeout=30)
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


@pytest.mark.parametrize("environment", ["elsewhere", "unset"])
def test_a_dead_workers_prediction_in_flight_is_forgotten_in_the_directory_given(
    tmp_path, monkeypatch, files_closed, environment: str
):
    """forget_dead_workers(directory) cleans that directory, whatever PROMETHEUS_MULTIPROC_DIR
    says when it is called: afterwards a scrape of it no longer counts the dead worker."""
    directory = tmp_path / "prom"
    directory.mkdir()
    _worker_with_a_prediction_in_flight(directory, _dead_pid(), monkeypatch)
    assert _in_flight(directory) == 1
    if environment == "unset":
        monkeypatch.delenv(MULTIPROC)
    else:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.setenv(MULTIPROC, str(tmp_path / "elsewhere"))

    forget_dead_workers(str(directory))

    assert _in_flight(directory) == 0
    assert list(directory.glob("gauge_livesum_*.db")) == []


def _scrape_as_an_unprivileged_user(metrics: ModelMetrics, answer) -> None:
    try:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        answer.send(metrics.exposition()[0].decode())
    except BaseException as exc:
        answer.send(f"failed: {exc!r}")


def test_a_worker_that_cannot_be_signalled_is_still_counted_as_running(monkeypatch, files_closed):
    """A scrape by a worker that may not signal a process (another user's) does not take it for
    dead: process 1 stands in for a worker with a prediction in flight, the scrape runs as an
    unprivileged user (root may signal anything), and the prediction is still counted."""
    if os.geteuid() != 0 and os.stat("/proc/1").st_uid == os.getuid():
        pytest.skip("process 1 belongs to the user running the tests")
    # World-writable, as a directory shared by workers of several users would be.
    directory = Path(tempfile.mkdtemp(prefix="mlobs-prom-"))
    try:
        directory.chmod(0o777)
        metrics = _worker_with_a_prediction_in_flight(directory, 1, monkeypatch)
        receiving, sending = multiprocessing.Pipe(duplex=False)
        scraper = multiprocessing.get_context("fork").Process(
            target=_scrape_as_an_unprivileged_user, args=(metrics, sending)
        )
        scraper.start()
        try:
            assert receiving.poll(60), "the scrape did not answer"
            exposition = receiving.recv()
        finally:
            scraper.join(timeout=30)
            if scraper.is_alive():
                scraper.kill()
        assert not exposition.startswith("failed"), exposition
        assert sample(exposition, "model_requests_in_flight", **SLOW) == 1
        assert (directory / "gauge_livesum_1.db").exists()
    finally:
        shutil.rmtree(directory)
