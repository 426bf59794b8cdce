"""`python -m mlobs.generate.kubernetes --out DIR`: the Kubernetes bases for other namespaces.

`make generate` writes deploy/kubernetes/ for the defaults (namespace mlobs, kube-prometheus-stack
in `monitoring` as release `kube-prometheus-stack`). Names of namespaces end up inside URLs and
file paths, where an overlay's `namespace:` cannot reach them, so a cluster with other names gets
its own rendering.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlobs.generate.__main__ import write_files
from mlobs.generate.kubernetes import render
from mlobs.generate.kubernetes.cluster import KubernetesSetup
from mlobs.generate.kubernetes.sources import SourceError
from mlobs.spec import DEFAULT_SPEC_PATH, SpecError, load_spec


def main(argv: list[str] | None = None) -> int:
    defaults = KubernetesSetup()
    parser = argparse.ArgumentParser(
        prog="python -m mlobs.generate.kubernetes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write the bases to")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--namespace", default=defaults.namespace)
    parser.add_argument("--monitoring-namespace", default=defaults.monitoring_namespace)
    parser.add_argument(
        "--release", default=defaults.release, help="Helm release of kube-prometheus-stack"
    )
    args = parser.parse_args(argv)
    try:
        setup = KubernetesSetup(args.namespace, args.monitoring_namespace, args.release)
    except ValueError as exc:  # a namespace Kubernetes would refuse
        parser.error(str(exc))
    try:
        rendered = render(load_spec(args.spec), args.root, setup, out=args.out)
    except (SpecError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_files(Path("."), rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
