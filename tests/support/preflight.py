"""docker/preflight.py as a module for the tests. It is a script, not a package: a `docker`
package would shadow the Docker SDK that testcontainers imports."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO

_NAME = "mlobs_preflight"


def load_preflight() -> ModuleType:
    """The module, loaded once (dataclasses look their module up in sys.modules)."""
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, REPO / "docker/preflight.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]
