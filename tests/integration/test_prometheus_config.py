"""Generated rule files pass promtool checks and the promtool unit tests in prometheus/tests."""

import subprocess
from pathlib import Path

from tests.conftest import REPO, require_tool
from tests.support.generated import rendered


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def _amtool_check(path) -> None:
    result = subprocess.run(
        [require_tool("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _rendered_prometheus(tmp_path: Path) -> Path:
    """prometheus/ as the generators render it now (the committed files equal it), written under
    tmp_path with the same layout (the promtool tests name ../rules/*.yml)."""
    for path, text in rendered().items():
        if path.parts[0] == "prometheus":
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text)
    return tmp_path / "prometheus"


def test_promtool_check_rules_accepts_every_rule_file(tmp_path):
    files = sorted(str(p) for p in (_rendered_prometheus(tmp_path) / "rules").glob("*.yml"))
    assert len(files) == 2
    result = _promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_and_recording_rule_passes_its_promtool_tests(tmp_path):
    tests = _rendered_prometheus(tmp_path) / "tests"
    files = sorted(str(p) for p in tests.glob("*.test.yml"))
    assert len(files) == 2
    result = _promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_promtool_cases():
    import yaml

    rules = yaml.safe_load((REPO / "prometheus/rules/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((REPO / "prometheus/tests/alerts.test.yml").read_text())["tests"]
    tested = {c["alertname"] for t in tests for c in t.get("alert_rule_test", [])}
    firing = {
        c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c["exp_alerts"]
    }
    assert alerts == tested == firing


def test_compose_prometheus_config_passes_promtool(tmp_path):
    # The compose file loads rules from /etc/prometheus/rules (a bind mount); point it here.
    prometheus = _rendered_prometheus(tmp_path)
    local = prometheus / "prometheus.yml"
    local.write_text(
        local.read_text().replace("/etc/prometheus/rules/*.yml", str(prometheus / "rules/*.yml"))
    )
    result = _promtool("check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_alertmanager_config_passes_amtool():
    _amtool_check(str(REPO / "alertmanager/alertmanager.yml"))


def test_native_stack_configs_pass_promtool_and_amtool(tmp_path):
    from mlobs.spec import load_spec
    from native.stack import NativeStack, Ports, StackOptions

    spec = load_spec(REPO / "observability.yaml")
    stack = NativeStack(StackOptions(spec=spec, ports=Ports.from_spec(spec), data_dir=tmp_path))
    stack.render()
    assert _promtool("check", "config", str(tmp_path / "config/prometheus.yml")).returncode == 0
    _amtool_check(str(tmp_path / "config/alertmanager.yml"))


def test_e2e_override_configs_pass_promtool_amtool_and_grafana_rules(tmp_path):
    from tests.support.e2e_config import render_e2e_config

    render_e2e_config(tmp_path / "e2e")
    config = tmp_path / "e2e/prometheus.yml"
    config.write_text(
        config.read_text().replace("/etc/prometheus/rules", str(tmp_path / "e2e/rules"))
    )
    assert _promtool("check", "config", str(config)).returncode == 0
    _amtool_check(str(tmp_path / "e2e/alertmanager.yml"))
    import yaml

    from mlobs.spec import duration_seconds
    from tests.support.e2e_config import E2E_CHANGES

    # The e2e run's shortest windows must hold several scrapes and rule evaluations, or its
    # rates stay empty and its alerts never fire within the test's waits.
    shortest = min(duration_seconds(c["window"]) for c in E2E_CHANGES.values() if "window" in c)
    intervals = yaml.safe_load(config.read_text())["global"]
    for name in ("scrape_interval", "evaluation_interval"):
        assert shortest / duration_seconds(intervals[name]) >= 4, (name, intervals[name])

    groups = yaml.safe_load((tmp_path / "e2e/grafana-alerting/alert-rules.yml").read_text())[
        "groups"
    ]
    assert all(g["interval"] == "10s" for g in groups)
    # The e2e suite stops a model container and waits for ModelServerMissing: it must be there.
    rules = yaml.safe_load((tmp_path / "e2e/rules/alerts.yml").read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in rules].count("ModelServerMissing") == 1
