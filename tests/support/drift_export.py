"""A DriftMonitor of one numeric feature x whose live export goes to counters a test can read,
on a clock the test sets (`clock.now`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlobs.drift import Baseline, DriftExport, DriftMonitor


class PlainCounter:
    """The one method DriftExport needs of a prometheus_client counter, with a readable value."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


@dataclass
class ExportedMonitor:
    monitor: DriftMonitor
    bins: list[PlainCounter]  # x's bins, missing last
    outside: PlainCounter  # x's out-of-range count
    now: list[float] = field(default_factory=lambda: [0.0])

    def exported(self) -> float:
        """Values of x exported so far, over every bin."""
        return sum(c.value for c in self.bins)


def exported_monitor(start: float = 0.0, **options: float) -> ExportedMonitor:
    """Baseline x in [1, 3]; batches of 3, max_delay 1 s unless `options` say otherwise."""
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0]})
    bins = [PlainCounter() for _ in range(baseline.features["x"].bins.size)]
    outside = PlainCounter()
    now = [start]
    monitor = DriftMonitor(
        baseline,
        export=DriftExport({"x": bins}, {"x": outside}),
        clock=lambda: now[0],
        **{"batch_size": 3, "max_delay_seconds": 1.0, **options},
    )
    return ExportedMonitor(monitor, bins, outside, now)
