"""`python -m mlobs.generate [--check]`: render every generated file from observability.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlobs.generate import (
    alertmanager_config,
    grafana_alerting,
    grafana_dashboards,
    kibana_objects,
    kubernetes,
    logstash_pipeline,
    prometheus_config,
    prometheus_rules,
    prometheus_tests,
)
from mlobs.generate.kubernetes.sources import SourceError
from mlobs.spec import DEFAULT_SPEC_PATH, Spec, SpecError, load_spec


def render_all(spec: Spec, root: Path = Path(".")) -> dict[Path, str]:
    """Every generated file, by path relative to the repository root."""
    rules = prometheus_rules.render(spec)
    # promtool resolves rule files relative to the test file.
    rule_files = [f"../rules/{path.name}" for path in rules]
    dashboards = grafana_dashboards.render(spec)
    return {
        **rules,
        **prometheus_tests.render(spec, rule_files),
        **prometheus_config.render(spec),
        **alertmanager_config.render(spec),
        **dashboards,
        **grafana_alerting.render(spec, dashboards),
        **logstash_pipeline.render(spec),
        **kibana_objects.render(root),
        **kubernetes.render(spec, root),
    }


def stale_files(root: Path, rendered: dict[Path, str]) -> list[Path]:
    """Generated files that are missing or differ from what the spec renders."""
    return [
        path
        for path, text in rendered.items()
        if not (root / path).is_file() or (root / path).read_text() != text
    ]


def write_files(root: Path, rendered: dict[Path, str]) -> None:
    """Write every rendered file below `root`, saying which."""
    for path, text in rendered.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    try:
        rendered = render_all(load_spec(args.spec), args.root)
    except (SpecError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(args.root, rendered)
        for path in stale:
            print(f"stale: {path} (run `make generate`)", file=sys.stderr)
        return 1 if stale else 0
    write_files(args.root, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
