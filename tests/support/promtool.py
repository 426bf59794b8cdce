"""Run `promtool test rules` on a test file written from Python data."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_tool
from tests.support.generated import generated_text

RULE_FILES = ("prometheus/rules/recording.yml", "prometheus/rules/alerts.yml")


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]], interval: str = "1m") -> None:
    """Write a promtool unit-test file for our rule files and assert that promtool passes it.

    The rule files are the generators' output now (the committed files equal it), written beside
    the test file, so that a mutation of a generator meets the test."""
    promtool = require_tool("promtool")
    rules = []
    for name in RULE_FILES:
        rule_file = tmp_path / Path(name).name
        rule_file.write_text(generated_text(name))
        rules.append(str(rule_file))
    path = tmp_path / "rules.test.yml"
    path.write_text(
        yaml.safe_dump({"rule_files": rules, "evaluation_interval": interval, "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One promtool input series, e.g. series("up", {"job": "x"}, "1x10")."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{label_text}}}", "values": values}
