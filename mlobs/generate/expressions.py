"""The PromQL of every recording rule and alert, built from the spec in one place so that the
Prometheus rules and the Grafana alert rules use the same expressions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.utils import floatToGoString

from mlobs.drift import PROPORTION_FLOOR
from mlobs.spec import Spec


@dataclass(frozen=True)
class Rule:
    """A recording rule: `record` is computed as `expr`."""

    record: str
    expr: str


@dataclass(frozen=True)
class Alert:
    """An alert: `query` compared with `threshold`, held for `for_`, with severity and texts.

    Annotations use only `$labels`, never `$value`: notifications stay stable while an alert
    fires, and promtool tests can state them exactly. Prometheus evaluates `expr`; Grafana runs
    `query` and applies the same comparison as a threshold expression.
    """

    name: str
    query: str
    op: Literal[">", "=="]
    threshold: float
    for_: str
    severity: str
    summary: str
    description: str
    window: str | None = None  # the range the query covers, if it has one

    @property
    def expr(self) -> str:
        query = f"(\n{self.query}\n)" if "\n" in self.query else self.query
        return f"{query} {self.op} {self.threshold:g}"


# Names of recorded series (stable whatever the windows in the spec are).
REQUEST_RATE = "model:requests:rate"
REQUEST_RATE_BY_STATUS = "model:requests_by_status:rate"
SERVER_ERROR_RATIO = "model:server_error_ratio"
LOW_CONFIDENCE_RATIO = "model:low_confidence_ratio"
BIN_INCREASE = "model_feature:bin_increase"
SAMPLES = "model_feature:samples"
BIN_RATIO = "model_feature:bin_ratio"
BASELINE_RATIO = "model_feature:baseline_ratio"
PSI = "model_feature:psi"
OUT_OF_RANGE_RATIO = "model_feature:out_of_range_ratio"
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
# Outcomes that failed the caller with a 5xx: server errors (500, 504 timeouts) and requests shed
# with 503 because the server was overloaded or shutting down. The error ratio counts both.
FAILED_STATUSES = ("server_error", "shed")
FAILED = f'status=~"{"|".join(FAILED_STATUSES)}"'


def bucket_label(bound: float) -> str:
    """A histogram bucket bound exactly as prometheus_client writes it in `le` (1.0 -> "1.0",
    not "1"): a matcher must equal the exposed text, or it selects nothing."""
    return floatToGoString(bound)


def latency_quantile_name(quantile: float) -> str:
    """`model:latency_seconds:p99` for 0.99."""
    return f"model:latency_seconds:p{quantile * 100:g}".replace(".", "_")


def model_jobs(spec: Spec) -> str:
    """Regex of the scrape jobs of the model servers (one job per model, named after it)."""
    return "|".join(m.name for m in spec.models)


def job_as_model(expr: str) -> str:
    """`expr` with a `model` label copied from `job` (each model's scrape job is named after it)."""
    return f'label_replace({expr}, "model", "$1", "job", "(.+)")'


def absent_targets(spec: Spec) -> str:
    """1, labelled with the job, for each model without any scrape target: `up` of its job is
    absent, not 0. With DNS discovery a stopped or crashed container drops out of DNS and its
    target disappears, so `up == 0` never fires for it; with several replicas a model counts as
    missing once all of them are gone."""
    return " or ".join(f'absent(up{{job="{m.name}"}})' for m in spec.models)


def targets_up(spec: Spec) -> str:
    """Per model, the number of targets scraped successfully: 0 when every replica is down and
    also when none is left to scrape (always a value for every model of the spec)."""
    return f'sum by (job) (up{{job=~"{model_jobs(spec)}"}})\nor\n({absent_targets(spec)}) * 0'


def recording_rules(spec: Spec) -> list[Rule]:
    """Every recording rule, in evaluation order (later rules read earlier ones)."""
    a = spec.alerts
    traffic, latency, drift = a.error_rate.window, a.latency.window, a.drift.window
    confidence = a.low_confidence
    floor = f"{PROPORTION_FLOOR:g}"
    return [
        Rule(REQUEST_RATE, f"sum by (model) (rate(model_requests_total[{traffic}]))"),
        Rule(
            REQUEST_RATE_BY_STATUS,
            f"sum by (model, status) (rate(model_requests_total[{traffic}]))",
        ),
        Rule(
            SERVER_ERROR_RATIO,
            f"sum by (model) (rate(model_requests_total{{{FAILED}}}[{traffic}]))\n"
            f"/\nsum by (model) (rate(model_requests_total[{traffic}]))",
        ),
        *(
            Rule(
                latency_quantile_name(q),
                f"histogram_quantile({q:g}, sum by (model, le) "
                f"(rate(model_latency_seconds_bucket[{latency}])))",
            )
            for q in LATENCY_QUANTILES
        ),
        Rule(
            LOW_CONFIDENCE_RATIO,
            # The le bucket counts predictions at or below the threshold.
            f"sum by (model) (rate(model_confidence_bucket"
            f'{{le="{bucket_label(confidence.confidence_threshold)}"}}[{confidence.window}]))\n/\n'
            f"sum by (model) (rate(model_confidence_count[{confidence.window}]))",
        ),
        # Drift: bin counts summed over every instance and worker, so PSI is exact at any scale.
        Rule(
            BIN_INCREASE,
            f"sum by (model, feature, bin) (increase(model_feature_bin_total[{drift}]))",
        ),
        Rule(SAMPLES, f"sum by (model, feature) ({BIN_INCREASE})"),
        Rule(BIN_RATIO, f"{BIN_INCREASE}\n/ on (model, feature) group_left\n{SAMPLES}"),
        # Every replica exports the same baseline: take one copy.
        Rule(BASELINE_RATIO, "max by (model, feature, bin) (model_feature_baseline_ratio)"),
        Rule(
            PSI,
            # Proportions floored at 1e-4 without renormalising, exactly as mlobs.drift.psi.
            f"sum by (model, feature) (\n"
            f"  (clamp_min({BIN_RATIO}, {floor}) - clamp_min({BASELINE_RATIO}, {floor}))\n"
            f"  * ln(clamp_min({BIN_RATIO}, {floor}) / clamp_min({BASELINE_RATIO}, {floor}))\n"
            f")\nand on (model, feature)\n{SAMPLES} >= {a.drift.min_samples}",
        ),
        Rule(
            OUT_OF_RANGE_RATIO,
            f"sum by (model, feature) (increase(model_feature_out_of_range_total[{drift}]))\n"
            f"/ on (model, feature)\n{SAMPLES}",
        ),
    ]


def alerts(spec: Spec) -> list[Alert]:
    """Every alert; expressions read the recording rules above."""
    a = spec.alerts
    return [
        Alert(
            "ModelP99LatencyHigh",
            # Exact, not interpolated: the threshold is a bucket boundary (the spec checks it).
            latency_quantile_name(0.99),
            ">",
            a.latency.threshold_seconds,
            a.latency.for_,
            a.latency.severity,
            f"p99 latency of {{{{ $labels.model }}}} is above {a.latency.threshold_seconds:g} s",
            f"The p99 latency of {{{{ $labels.model }}}} over {a.latency.window} is above "
            f"{a.latency.threshold_seconds:g} s.",
            window=a.latency.window,
        ),
        Alert(
            "ModelErrorRateHigh",
            # Only with enough traffic for a ratio to mean something.
            f"{SERVER_ERROR_RATIO}\nand on (model)\n"
            f"{REQUEST_RATE} >= {a.error_rate.min_request_rate:g}",
            ">",
            a.error_rate.threshold_ratio,
            a.error_rate.for_,
            a.error_rate.severity,
            f"{{{{ $labels.model }}}} fails more than {a.error_rate.threshold_ratio:.0%} of "
            "requests with a 5xx (server errors and shed requests)",
            f"More than {a.error_rate.threshold_ratio:.0%} of prediction requests to "
            f"{{{{ $labels.model }}}} over {a.error_rate.window} failed with a server error "
            "(500, or 504 on timeout) or were shed with 503 (overloaded or shutting down).",
            window=a.error_rate.window,
        ),
        Alert(
            "ModelFeatureDriftHigh",
            PSI,
            ">",
            a.drift.psi_threshold,
            a.drift.for_,
            a.drift.severity,
            "Feature {{ $labels.feature }} of {{ $labels.model }} drifted from its training data",
            f"The population stability index of {{{{ $labels.feature }}}} against the training "
            f"baseline over {a.drift.window} is above {a.drift.psi_threshold:g}.",
            window=a.drift.window,
        ),
        Alert(
            "ModelLowConfidence",
            LOW_CONFIDENCE_RATIO,
            ">",
            a.low_confidence.max_share,
            a.low_confidence.for_,
            a.low_confidence.severity,
            f"More than {a.low_confidence.max_share:.0%} of {{{{ $labels.model }}}} predictions "
            f"have confidence at or below {a.low_confidence.confidence_threshold:g}",
            f"More than {a.low_confidence.max_share:.0%} of predictions over "
            f"{a.low_confidence.window} have confidence at or below "
            f"{a.low_confidence.confidence_threshold:g}.",
            window=a.low_confidence.window,
        ),
        Alert(
            "ModelServerDown",
            # A target that exists but cannot be scraped: a hung server, or a static target.
            job_as_model(f'up{{job=~"{model_jobs(spec)}"}}'),
            "==",
            0,
            a.server_down.for_,
            a.server_down.severity,
            "{{ $labels.model }} target {{ $labels.instance }} is down",
            "Prometheus cannot scrape {{ $labels.instance }} of {{ $labels.model }}.",
        ),
        Alert(
            "ModelServerMissing",
            job_as_model(absent_targets(spec)),
            "==",
            1,
            a.server_down.for_,
            a.server_down.severity,
            "{{ $labels.model }} has no scrape target",
            "Prometheus has no target of {{ $labels.model }}: every replica stopped, crashed or "
            "was removed (with DNS discovery a stopped container disappears instead of going "
            "down).",
        ),
        Alert(
            "ModelNoTraffic",
            f"sum by (model) (rate(model_requests_total[{a.no_traffic.window}]))",
            "==",
            0,
            a.no_traffic.for_,
            a.no_traffic.severity,
            "{{ $labels.model }} receives no prediction requests",
            f"{{{{ $labels.model }}}} is up but answered no prediction request for "
            f"{a.no_traffic.window}.",
            window=a.no_traffic.window,
        ),
    ]
