"""Generated rule files pass promtool checks and the promtool unit tests in prometheus/tests."""

import subprocess

from tests.conftest import REPO, require_tool


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_promtool_check_rules_accepts_every_rule_file():
    files = sorted(str(p) for p in (REPO / "prometheus/rules").glob("*.yml"))
    assert files
    result = _promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_and_recording_rule_passes_its_promtool_tests():
    files = sorted(str(p) for p in (REPO / "prometheus/tests").glob("*.test.yml"))
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
