"""The scripts of docker/ as modules for the tests. They are scripts, not a package: a `docker`
package would shadow the Docker SDK that testcontainers imports."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO


def load_script(name: str) -> ModuleType:
    """docker/<name>.py, loaded once (dataclasses look their module up in sys.modules)."""
    module_name = f"mlobs_docker_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / f"docker/{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def load_preflight() -> ModuleType:
    """docker/preflight.py."""
    return load_script("preflight")
