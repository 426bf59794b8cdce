"""The images install docker/requirements.lock, exact versions with hashes: it must still satisfy
every range of pyproject.toml (a dependency added or a range moved without `make lock` fails
here), pin everything it lists, and be what the Dockerfile installs."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO
from tests.support.stack_files import env_example

LOCK = REPO / "docker/requirements.lock"
DOCKERFILE = REPO / "services/Dockerfile"


def _python_version() -> str:
    return env_example()["PYTHON_VERSION"]


# The images: python:<PYTHON_VERSION>-slim on linux, for both architectures Docker builds.
IMAGE_ENVIRONMENTS = [
    {
        "python_version": ".".join(_python_version().split(".")[:2]),
        "python_full_version": _python_version(),
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
    }
    for machine in ("x86_64", "aarch64")
]


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, environment: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def parse_lock(text: str) -> list[Pin]:
    """The entries of a pip requirements file written by `uv pip compile --generate-hashes`."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)  # continuation lines
    pins = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(\S+)", line))
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", line))
        [spec] = requirement.specifier  # exactly one clause...
        assert spec.operator == "==", f"not pinned exactly: {line[:80]}"  # ...and it is ==
        pins.append(
            Pin(canonicalize_name(requirement.name), Version(spec.version), requirement.marker,
                hashes)
        )  # fmt: skip
    return pins


def _extra_requirements(requirement: Requirement, environment: dict[str, str]) -> set[str]:
    """Names an extra pulls in, from the installed distribution's metadata."""
    requires = importlib.metadata.metadata(requirement.name).get_all("Requires-Dist") or []
    names = set()
    for extra in requirement.extras:
        for line in requires:
            dependency = Requirement(line)
            marker = dependency.marker
            # Pulled in by the extra: true with it, false without it.
            if (
                marker
                and marker.evaluate({**environment, "extra": extra})
                and not marker.evaluate({**environment, "extra": ""})
            ):
                names.add(canonicalize_name(dependency.name))
    return names


def lock_problems(requirements: list[str], pins: list[Pin], environment: dict) -> list[str]:
    """Why the lock does not satisfy `requirements` in `environment` (empty: it does)."""
    locked = {pin.name: pin.version for pin in pins if pin.applies(environment)}
    problems = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            needs = requirement.specifier
            problems.append(f"{requirement.name}: locked {locked[name]}, needs {needs}")
        elif requirement.extras:
            missing = _extra_requirements(requirement, environment) - set(locked)
            if missing:
                problems.append(f"{line}: the extra's {', '.join(sorted(missing))} not in the lock")
    return problems


def _project_dependencies() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


PINS = parse_lock(LOCK.read_text())


@pytest.mark.parametrize("environment", IMAGE_ENVIRONMENTS, ids=lambda e: e["platform_machine"])
def test_the_lock_satisfies_every_range_of_pyproject(environment):
    assert lock_problems(_project_dependencies(), PINS, environment) == []


def test_the_check_catches_a_moved_range_a_new_dependency_and_a_missing_extra():
    environment = IMAGE_ENVIRONMENTS[0]
    without_uvloop = [pin for pin in PINS if pin.name != "uvloop"]
    problems = lock_problems(
        ["fastapi>=999", "scikit-learn>=1.5", "uvicorn[standard]>=0.30"], without_uvloop,
        environment,
    )  # fmt: skip
    assert [p.split(":")[0] for p in problems] == [
        "fastapi",
        "scikit-learn",
        "uvicorn[standard]>=0.30",
    ]
    assert problems[2] == "uvicorn[standard]>=0.30: the extra's uvloop not in the lock"


def test_every_entry_is_pinned_with_hashes():
    assert PINS
    for pin in PINS:
        assert pin.hashes and all(h.startswith("sha256:") for h in pin.hashes), pin.name
    names = [(pin.name, str(pin.marker)) for pin in PINS]
    assert len(names) == len(set(names))


def test_the_images_install_the_lock_and_nothing_from_the_ranges():
    dockerfile = DOCKERFILE.read_text().replace("\\\n", " ")
    [lock_in_image] = re.findall(r"^COPY docker/requirements\.lock (\S+)$", dockerfile, re.M)
    installs = re.findall(r"^RUN .*?\bpip install ([^&\n]*)", dockerfile, re.M)
    # The one pip install reads that copy in hash-checking mode, and nothing else.
    assert [args.split() for args in installs] == [["--require-hashes", "-r", lock_in_image]]
    assert not re.search(r"^(COPY|ADD) .*pyproject\.toml", dockerfile, re.M)  # no ranges inside
    assert "make lock" in LOCK.read_text().splitlines()[1]  # how to refresh it
