"""prometheus/tests/*.test.yml: promtool unit tests for every alert and recording rule.

Rendered from the same spec as the rules, so a threshold change moves the tests with it; what the
tests pin down is the behaviour: each alert fires above its threshold once `for` has passed, stays
silent at and just below it, and resolves after recovery.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlobs.drift import psi_from_counts
from mlobs.generate import expressions as x
from mlobs.generate.links import dashboard_url
from mlobs.generate.yaml_output import dump
from mlobs.metrics import LATENCY_BUCKETS
from mlobs.spec import Spec, duration_seconds

TESTS_DIR = Path("prometheus/tests")
ALERTS_TEST_FILE = TESTS_DIR / "alerts.test.yml"
RECORDING_TEST_FILE = TESTS_DIR / "recording.test.yml"
MODEL = "chatbot"
ROUNDING = 1e-9
_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def _minutes(duration: str) -> int:
    return int(duration_seconds(duration) // 60)


def _num(value: float) -> str:
    return f"{value:.12g}"


@dataclass(frozen=True)
class Phase:
    """`minutes` samples, one a minute, of a counter growing by `per_minute` (or a gauge value)."""

    minutes: int
    per_minute: float


def counter(phases: Sequence[Phase]) -> str:
    """promtool values of a counter that starts at 0 and grows phase by phase."""
    first, *rest = phases
    segments = [f"0+{_num(first.per_minute)}x{first.minutes}"]
    value = first.per_minute * first.minutes
    for phase in rest:
        start = value + phase.per_minute
        segments.append(f"{_num(start)}+{_num(phase.per_minute)}x{phase.minutes - 1}")
        value = start + phase.per_minute * (phase.minutes - 1)
    return " ".join(segments)


def gauge(phases: Sequence[Phase]) -> str:
    """promtool values of a gauge that holds each phase's value."""
    first, *rest = phases
    return " ".join(
        [f"{_num(first.per_minute)}x{first.minutes}"]
        + [f"{_num(p.per_minute)}x{p.minutes - 1}" for p in rest]
    )


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


class AlertCheck:
    """Builds the `alert_rule_test` entries of one alert."""

    def __init__(self, alert: x.Alert, spec: Spec) -> None:
        self.alert = alert
        self.dashboard = dashboard_url(spec.grafana_url, alert.name)

    def silent(self, minute: int) -> dict[str, Any]:
        return {"eval_time": f"{minute}m", "alertname": self.alert.name, "exp_alerts": []}

    def firing(self, minute: int, labels: dict[str, str]) -> dict[str, Any]:
        """The alert fires at `minute`, once, with `labels`."""
        return {
            "eval_time": f"{minute}m",
            "alertname": self.alert.name,
            "exp_alerts": [self._expected(labels)],
        }

    def _expected(self, labels: dict[str, str]) -> dict[str, Any]:
        labels = {**labels, "severity": self.alert.severity}

        def fill(text: str) -> str:
            return _LABEL_REF.sub(lambda m: labels[m.group(1)], text)

        annotations = {
            "summary": fill(self.alert.summary),
            "description": fill(self.alert.description),
            "dashboard": fill(self.dashboard),
        }
        return {"exp_labels": labels, "exp_annotations": annotations}


def _case(name: str, input_series: list[dict[str, str]], checks: list[dict[str, Any]]) -> dict:
    return {"name": name, "interval": "1m", "input_series": input_series, "alert_rule_test": checks}


# --- one function per alert: the series that drive it and what must happen when ---------------


def _latency_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    a = spec.alerts.latency
    threshold, window, hold = a.threshold_seconds, _minutes(a.window), _minutes(a.for_)
    per_minute = 1000.0

    def histogram(shares: Sequence[tuple[int, float]]) -> list[dict[str, str]]:
        # Share `s` of the requests take exactly the threshold, the rest the next bucket up.
        labels = {"model": MODEL, "model_version": "1", "instance": "i1"}
        out = []
        for le in (*LATENCY_BUCKETS, float("inf")):
            phases = [
                Phase(
                    m, 0.0 if le < threshold else s * per_minute if le == threshold else per_minute
                )
                for m, s in shares
            ]
            out.append(
                series(
                    "model_latency_seconds_bucket",
                    {**labels, "le": x.bucket_label(le)},
                    counter(phases),
                )
            )
        out.append(
            series(
                "model_latency_seconds_count",
                labels,
                counter([Phase(m, per_minute) for m, _ in shares]),
            )
        )
        return out

    recover_at = hold + window + 5
    labels = {"model": MODEL}
    return [
        _case(
            "p99 above the threshold fires after `for`, and resolves",
            histogram([(recover_at, 0.98), (recover_at + window + 5, 0.995)]),
            [
                check.silent(hold),  # pending: true since 1m, not yet for `for`
                check.firing(hold + 2, labels),
                check.silent(recover_at + window + 2),
            ],
        ),
        _case(
            "p99 exactly at the threshold stays silent",
            histogram([(hold + window + 5, 0.99)]),
            [check.silent(hold + window)],
        ),
        _case(
            "p99 just below the threshold stays silent",
            histogram([(hold + window + 5, 0.991)]),
            [check.silent(hold + window)],
        ),
    ]


def _error_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    a = spec.alerts.error_rate
    ratio, window, hold = a.threshold_ratio, _minutes(a.window), _minutes(a.for_)
    busy = 600.0  # requests a minute: 10 req/s, well above the minimum rate

    def requests(
        total: float, phases_share: Sequence[tuple[int, float]], shed: float = 0.0
    ) -> list[dict[str, str]]:
        """Share `s` of `total` requests fail: `shed` of them shed with 503, the rest 5xx errors."""
        labels = {"model": MODEL, "model_version": "1", "instance": "i1"}
        client_errors = 0.05 * total  # count in the denominator only
        return [
            series(
                "model_requests_total",
                {**labels, "status": "server_error"},
                counter([Phase(m, (1 - shed) * s * total) for m, s in phases_share]),
            ),
            series(
                "model_requests_total",
                {**labels, "status": "shed"},
                counter([Phase(m, shed * s * total) for m, s in phases_share]),
            ),
            series(
                "model_requests_total",
                {**labels, "status": "client_error"},
                counter([Phase(m, client_errors) for m, _ in phases_share]),
            ),
            series(
                "model_requests_total",
                {**labels, "status": "success"},
                counter([Phase(m, total - client_errors - s * total) for m, s in phases_share]),
            ),
        ]

    end = hold + window + 5
    labels = {"model": MODEL}
    min_per_minute = a.min_request_rate * 60
    return [
        _case(
            "server errors above the ratio fire after `for`, and resolve",
            requests(busy, [(end, 2 * ratio), (end + window + 5, 0.0)]),
            [
                check.silent(hold),
                check.firing(hold + 2, labels),
                check.silent(end + window + 2),
            ],
        ),
        _case(
            "shed requests above the ratio fire: a 503 fails the caller too",
            requests(busy, [(end, 2 * ratio)], shed=1.0),
            [check.silent(hold), check.firing(hold + 2, labels)],
        ),
        _case(
            "server errors and shed requests, each below the ratio, fire together above it",
            requests(busy, [(end, 1.2 * ratio)], shed=0.5),
            [check.firing(hold + 2, labels)],
        ),
        _case(
            "server errors exactly at the ratio stay silent",
            requests(busy, [(end, ratio)]),
            [check.silent(hold + window)],
        ),
        _case(
            "server errors just below the ratio stay silent",
            requests(busy, [(end, 0.9 * ratio)]),
            [check.silent(hold + window)],
        ),
        _case(
            "a high ratio on too little traffic stays silent",
            requests(0.5 * min_per_minute, [(end, 0.5)]),
            [check.silent(hold + window)],
        ),
    ]


def _two_bin_share(target_psi: float) -> float:
    """Share p of bin a (baseline 50/50) whose PSI against the baseline is `target_psi`."""
    low, high = 0.5, 0.9999
    for _ in range(100):
        mid = (low + high) / 2
        value = psi_from_counts(np.array([0.5, 0.5, 0.0]), np.array([mid, 1 - mid, 0.0]))
        low, high = (mid, high) if value < target_psi else (low, mid)
    return (low + high) / 2


def _drift_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    a = spec.alerts.drift
    window, hold, threshold = _minutes(a.window), _minutes(a.for_), a.psi_threshold
    per_minute = 4 * a.min_samples / window  # values a minute: 4x the minimum over one window
    warm_up = int(np.ceil(a.min_samples / per_minute))  # minutes until PSI is computed

    def bins(phases: Sequence[tuple[int, float]], rate: float, instances: int = 1) -> list[dict]:
        out = []
        for i in range(1, instances + 1):
            labels = {"model": MODEL, "feature": "tokens", "instance": f"i{i}"}
            shares = {
                "00:(-inf,5]": lambda p: p,
                "01:(5,inf)": lambda p: 1 - p,
                "missing": lambda p: 0.0,
            }
            baseline = {"00:(-inf,5]": 0.5, "01:(5,inf)": 0.5, "missing": 0.0}
            total = sum(m for m, _ in phases)
            for b, share in shares.items():
                out.append(
                    series(
                        "model_feature_bin_total",
                        {**labels, "bin": b},
                        counter([Phase(m, share(p) * rate / instances) for m, p in phases]),
                    )
                )
                out.append(
                    series(
                        "model_feature_baseline_ratio",
                        {**labels, "bin": b},
                        gauge([Phase(total, baseline[b])]),
                    )
                )
        return out

    labels = {"model": MODEL, "feature": "tokens"}
    long = window + hold + warm_up + 5
    shifted = _two_bin_share(3 * threshold)
    return [
        _case(
            "PSI above the threshold, summed over two replicas, fires after `for`, and resolves",
            bins([(long, shifted), (window + 10, 0.5)], per_minute, instances=2),
            [
                check.silent(warm_up + hold - 2),
                check.firing(warm_up + hold + 2, labels),
                check.silent(long + window + 5),
            ],
        ),
        _case(
            "PSI just above the threshold fires",
            bins([(long, _two_bin_share(1.02 * threshold))], per_minute),
            [check.firing(window + hold, labels)],
        ),
        _case(
            "PSI just below the threshold stays silent",
            bins([(long, _two_bin_share(0.98 * threshold))], per_minute),
            [check.silent(window + hold)],
        ),
        _case(
            "large drift on fewer values than min_samples stays silent",
            bins([(long, 0.99)], 0.5 * a.min_samples / window),
            [check.silent(window + hold)],
        ),
    ]


def _low_confidence_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    a = spec.alerts.low_confidence
    window, hold, share = _minutes(a.window), _minutes(a.for_), a.max_share
    per_minute = 100.0

    def confidence(phases: Sequence[tuple[int, float]]) -> list[dict]:
        labels = {"model": MODEL, "model_version": "1", "instance": "i1"}
        le = x.bucket_label(a.confidence_threshold)
        return [
            series(
                "model_confidence_bucket",
                {**labels, "le": le},
                counter([Phase(m, s * per_minute) for m, s in phases]),
            ),
            series(
                "model_confidence_count", labels, counter([Phase(m, per_minute) for m, _ in phases])
            ),
        ]

    end = hold + window + 5
    return [
        _case(
            "a low-confidence share above the maximum fires after `for`, and resolves",
            confidence([(end, share + 0.1), (end + window + 5, share - 0.1)]),
            [
                check.silent(hold),
                check.firing(hold + 2, {"model": MODEL}),
                check.silent(end + window + 2),
            ],
        ),
        _case(
            "a share exactly at the maximum stays silent",
            confidence([(end, share)]),
            [check.silent(hold + window)],
        ),
        _case(
            "a share just below the maximum stays silent",
            confidence([(end, share - 0.01)]),
            [check.silent(hold + window)],
        ),
    ]


def _server_down_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    hold = _minutes(spec.alerts.server_down.for_)
    up, down = 5, hold + 5
    target = {"job": MODEL, "instance": f"{MODEL}:8080"}
    return [
        _case(
            "a model server target down fires after `for`, and resolves when it is back",
            [series("up", target, gauge([Phase(up, 1), Phase(down, 0), Phase(10, 1)]))],
            [
                check.silent(up),
                check.firing(up + hold + 1, {**target, "model": MODEL}),
                check.silent(up + down + 2),
            ],
        ),
        _case(
            "a target of another job down does not fire",
            [
                series(
                    "up",
                    {"job": "prometheus", "instance": "localhost:9090"},
                    gauge([Phase(up, 1), Phase(down, 0)]),
                )
            ],
            [check.silent(up + hold + 1)],
        ),
        _case(
            "a target that vanishes from discovery never reports down (ModelServerMissing)",
            [series("up", target, vanishing(up))],
            [check.silent(up + hold + 5)],
        ),
    ]


def vanishing(minutes: int) -> str:
    """promtool values of `up` of a target that discovery drops after `minutes`: Prometheus
    writes a staleness marker and the series ends, it does not turn 0."""
    return f"1x{minutes} stale"


def _server_missing_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    hold = _minutes(spec.alerts.server_down.for_)
    up, gone = 5, hold + 5  # minutes with targets, then without
    end = up + gone + 10

    def target(replica: int) -> dict[str, str]:
        return {"job": MODEL, "instance": f"{MODEL}/10.0.0.{replica}"}

    # Every other model keeps its target: only MODEL may fire.
    others = [
        series("up", {"job": m.name, "instance": f"{m.name}/10.0.1.1"}, f"1x{end}")
        for m in spec.models
        if m.name != MODEL
    ]
    missing = {"job": MODEL, "model": MODEL}
    return [
        _case(
            "the only target vanishes (stopped container): fires after `for`, resolves when a "
            "new container is discovered",
            [
                *others,
                series("up", target(1), vanishing(up)),
                series("up", target(2), f"_x{up + gone} 1x10"),
            ],
            [
                check.silent(up),
                check.firing(up + hold + 2, missing),
                check.silent(up + gone + 2),
            ],
        ),
        _case(
            "one of two replicas vanishes: the other still serves, silent",
            [*others, series("up", target(1), vanishing(up)), series("up", target(2), f"1x{end}")],
            [check.silent(up + hold + 2)],
        ),
        _case(
            "both replicas vanish: fires",
            [
                *others,
                series("up", target(1), vanishing(up)),
                series("up", target(2), vanishing(up)),
            ],
            [check.firing(up + hold + 2, missing)],
        ),
        _case(
            "a target that is down (up == 0) is ModelServerDown's, not missing",
            [*others, series("up", target(1), gauge([Phase(up, 1), Phase(gone, 0)]))],
            [check.silent(up + hold + 2)],
        ),
    ]


def _no_traffic_cases(spec: Spec, check: AlertCheck) -> list[dict]:
    a = spec.alerts.no_traffic
    window, hold = _minutes(a.window), _minutes(a.for_)
    labels = {"model": MODEL, "model_version": "1", "instance": "i1", "status": "success"}
    quiet = hold + 5
    return [
        _case(
            "an up server without requests fires after `for`, and resolves with traffic",
            [
                series(
                    "model_requests_total",
                    labels,
                    counter([Phase(quiet, 0), Phase(window + 5, 30)]),
                )
            ],
            [
                check.silent(hold - 1),
                check.firing(hold + 2, {"model": MODEL}),
                check.silent(quiet + 2),
            ],
        ),
        _case(
            "steady traffic stays silent",
            [series("model_requests_total", labels, counter([Phase(quiet + window, 30)]))],
            [check.silent(hold + window)],
        ),
    ]


_CASES = {
    "ModelP99LatencyHigh": _latency_cases,
    "ModelErrorRateHigh": _error_cases,
    "ModelFeatureDriftHigh": _drift_cases,
    "ModelLowConfidence": _low_confidence_cases,
    "ModelServerDown": _server_down_cases,
    "ModelServerMissing": _server_missing_cases,
    "ModelNoTraffic": _no_traffic_cases,
}


def alert_tests(spec: Spec) -> list[dict]:
    """Test groups for every alert of the spec (an alert without cases is an error)."""
    groups = []
    for alert in x.alerts(spec):
        if alert.name not in _CASES:
            raise KeyError(f"alert {alert.name} has no promtool test cases")
        groups += _CASES[alert.name](spec, AlertCheck(alert, spec))
    return groups


# --- recording rules: known rates in, exact values out ----------------------------------------


def _expect(record: str, labels: dict[str, str], value: float, minute: int) -> dict[str, Any]:
    """`record{labels}` equals `value`, both rounded to 1e-9 the way PromQL's round() does
    (promtool compares sample values exactly, and PromQL sums in its own order)."""
    text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {
        "expr": f"round({record}{{{text}}}, {ROUNDING:g})",
        "eval_time": f"{minute}m",
        "exp_samples": [{"labels": f"{{{text}}}", "value": _round(value)}],
    }


def _round(value: float) -> float:
    return math.floor(value * (1 / ROUNDING) + 0.5) / (1 / ROUNDING)


def _traffic_recording_case(spec: Spec) -> dict:
    """Two replicas; the rules sum them per model."""
    minute = _minutes(spec.alerts.low_confidence.window) + 5
    per_minute = {  # instance -> status -> requests a minute
        "i1": {"success": 300.0, "client_error": 30.0, "server_error": 6.0, "shed": 0.0},
        "i2": {"success": 300.0, "client_error": 24.0, "server_error": 0.0, "shed": 12.0},
    }
    # Cumulative latency shares: p50 = 0.05, p90 = 0.1 and p99 = 0.25 exactly, because each
    # quantile's rank is the top of its bucket.
    latency_share = {0.05: 0.5, 0.075: 0.5, 0.1: 0.9, 0.25: 0.99}
    low_confidence_share = 0.25
    input_series = []
    for instance, statuses in per_minute.items():
        labels = {"model": MODEL, "model_version": "1", "instance": instance}
        for status, count in statuses.items():
            input_series.append(
                series(
                    "model_requests_total",
                    {**labels, "status": status},
                    counter([Phase(minute, count)]),
                )
            )
        total = sum(statuses.values())
        for le in (*LATENCY_BUCKETS, float("inf")):
            share = 0.0 if le < 0.05 else latency_share.get(le, 1.0)
            input_series.append(
                series(
                    "model_latency_seconds_bucket",
                    {**labels, "le": x.bucket_label(le)},
                    counter([Phase(minute, share * total)]),
                )
            )
        le = x.bucket_label(spec.alerts.low_confidence.confidence_threshold)
        input_series += [
            series(
                "model_confidence_bucket",
                {**labels, "le": le},
                counter([Phase(minute, low_confidence_share * total)]),
            ),
            series("model_confidence_count", labels, counter([Phase(minute, total)])),
        ]
    statuses = ("success", "client_error", "server_error", "shed")
    by_status = {s: sum(i[s] for i in per_minute.values()) / 60 for s in statuses}
    total_rate = sum(by_status.values())
    model = {"model": MODEL}
    checks = [
        _expect(x.REQUEST_RATE, model, total_rate, minute),
        *(
            _expect(x.REQUEST_RATE_BY_STATUS, {**model, "status": s}, r, minute)
            for s, r in by_status.items()
        ),
        _expect(
            x.SERVER_ERROR_RATIO,
            model,
            sum(by_status[s] for s in x.FAILED_STATUSES) / total_rate,
            minute,
        ),
        _expect(x.latency_quantile_name(0.5), model, 0.05, minute),
        _expect(x.latency_quantile_name(0.9), model, 0.1, minute),
        _expect(x.latency_quantile_name(0.99), model, 0.25, minute),
        _expect(x.LOW_CONFIDENCE_RATIO, model, low_confidence_share, minute),
    ]
    return {
        "name": "traffic, errors, latency and confidence, summed over replicas",
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": checks,
    }


def _drift_recording_case(spec: Spec) -> dict:
    """One feature on two replicas with an empty bin: the floor and the sums both matter."""
    window = _minutes(spec.alerts.drift.window)
    minute = 2 * window
    bins = ["00:(-inf,5]", "01:(5,9]", "02:(9,inf)", "missing"]
    baseline = [0.5, 0.3, 0.2, 0.0]
    per_minute = {"i1": [2.0, 3.0, 0.0, 1.0], "i2": [4.0, 1.0, 0.0, 1.0]}  # values a minute
    out_of_range = {"i1": 1.5, "i2": 0.5}
    input_series = []
    for instance, counts in per_minute.items():
        labels = {"model": MODEL, "feature": "tokens", "instance": instance}
        for b, count, ratio in zip(bins, counts, baseline, strict=True):
            input_series += [
                series(
                    "model_feature_bin_total", {**labels, "bin": b}, counter([Phase(minute, count)])
                ),
                series(
                    "model_feature_baseline_ratio",
                    {**labels, "bin": b},
                    gauge([Phase(minute, ratio)]),
                ),
            ]
        input_series.append(
            series(
                "model_feature_out_of_range_total",
                labels,
                counter([Phase(minute, out_of_range[instance])]),
            )
        )
    summed = [float(c) * window for c in np.sum(list(per_minute.values()), axis=0)]
    samples = sum(summed)
    feature = {"model": MODEL, "feature": "tokens"}
    per_bin = list(zip(bins, summed, baseline, strict=True))
    psi = psi_from_counts(np.array(baseline), np.array(summed))
    checks = [
        *(_expect(x.BIN_INCREASE, {**feature, "bin": b}, c, minute) for b, c, _ in per_bin),
        _expect(x.SAMPLES, feature, samples, minute),
        *(_expect(x.BIN_RATIO, {**feature, "bin": b}, c / samples, minute) for b, c, _ in per_bin),
        *(_expect(x.BASELINE_RATIO, {**feature, "bin": b}, r, minute) for b, _, r in per_bin),
        _expect(
            x.OUT_OF_RANGE_RATIO, feature, sum(out_of_range.values()) * window / samples, minute
        ),
        _expect(x.PSI, feature, psi, minute),  # mlobs.drift.psi of the same counts
    ]
    return {
        "name": "drift: bin ratios and PSI over replicas",
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": checks,
    }


def render(spec: Spec, rule_files: Sequence[str]) -> dict[Path, str]:
    """The promtool test files, by path relative to the repository root."""
    header = {"rule_files": list(rule_files), "evaluation_interval": "1m"}
    recording = [_traffic_recording_case(spec), _drift_recording_case(spec)]
    return {
        ALERTS_TEST_FILE: dump({**header, "tests": alert_tests(spec)}),
        RECORDING_TEST_FILE: dump({**header, "tests": recording}),
    }
