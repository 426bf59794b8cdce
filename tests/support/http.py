"""Helpers to read what a model server exposes: metric samples and JSON log lines."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mlobs.logs import flush_logs


def metric_samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of label items): value} of a text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample; KeyError names what was asked for when it is absent."""
    key = (name, frozenset(labels.items()))
    samples = metric_samples(exposition)
    if key not in samples:
        raise KeyError(f"no sample {name}{labels} in the exposition")
    return samples[key]


def label_values(exposition: str, name: str, label: str) -> set[str]:
    """Every value `label` takes in samples called `name`."""
    return {
        dict(labels)[label]
        for sample_name, labels in metric_samples(exposition)
        if sample_name == name and label in dict(labels)
    }


def log_events(path: Path, message: str = "inference") -> list[dict]:
    """The JSON events with this `message` in a log file (every line must be JSON).

    Lines this process has queued (JsonLinesSink writes at the event loop's next turn) are
    written first, so in-process servers' lines are all there.
    """
    flush_logs()
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("message") == message]
