"""The generated rule files pass promtool's own checks."""

import subprocess

from tests.conftest import REPO, require_tool


def test_promtool_check_rules_accepts_every_rule_file():
    promtool = require_tool("promtool")
    files = sorted(str(p) for p in (REPO / "prometheus/rules").glob("*.yml"))
    assert files
    result = subprocess.run(
        [promtool, "check", "rules", *files], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
