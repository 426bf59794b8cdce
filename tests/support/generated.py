"""The generated files as `make generate` renders them now, in memory.

Tests of what a generated file means read it here rather than from the checkout: the committed
files equal this output (tests/unit/test_generated_files.py), and reading it in memory runs the
generators, so a mutation of a generator meets the tests of meaning too (`make mutate`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from mlobs.generate.__main__ import render_all
from mlobs.spec import load_spec
from tests.conftest import REPO


@cache
def rendered() -> dict[Path, str]:
    """Every generated file by its path relative to the repository root."""
    return render_all(load_spec(REPO / "observability.yaml"), REPO)


def generated_text(path: str | Path) -> str:
    """One generated file's text."""
    return rendered()[Path(path)]


def generated_yaml(path: str | Path) -> Any:
    """One generated YAML file, parsed."""
    return yaml.safe_load(generated_text(path))


def generated_json(path: str | Path) -> Any:
    """One generated JSON file, parsed."""
    return json.loads(generated_text(path))


def spec_yaml() -> dict[str, Any]:
    """observability.yaml as plain YAML: expectations come from here, not from mlobs.spec."""
    return yaml.safe_load((REPO / "observability.yaml").read_text())
