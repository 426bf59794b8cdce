"""`pip install .` installs the `mlobs` library and nothing else at top level: no `services`,
`native`, `setup` or `tests` in a user's site-packages. Built from a copy of the checkout (the
build writes build/ and *.egg-info beside the sources), offline, without dependencies."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# Every top-level Python package of the checkout, so that a `packages.find` that picks up more
# than `mlobs` shows up in the wheel.
TOP_LEVEL_PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py"))
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in TOP_LEVEL_PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=_IGNORE)
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    [built] = dist.glob("mlobs-*.whl")
    return built


def _record(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        [record] = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        return [row[0] for row in csv.reader(archive.read(record).decode().splitlines()) if row]


def test_the_checkout_has_the_packages_the_wheel_must_leave_out():
    assert {"mlobs", "services", "native", "setup"} <= set(TOP_LEVEL_PACKAGES)


def test_the_wheel_holds_mlobs_only_with_its_type_marker(wheel):
    paths = _record(wheel)
    top_level = {path.split("/")[0] for path in paths if ".dist-info/" not in path}
    assert top_level == {"mlobs"}
    # Every module and the type marker: an import of a user's code finds all of mlobs.
    checkout = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "mlobs").rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed")
    }
    assert "mlobs/py.typed" in checkout
    assert sorted(checkout - set(paths)) == []


def test_installing_into_a_fresh_venv_adds_mlobs_and_its_metadata_only(wheel, tmp_path):
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    before = set(p.name for p in purelib.iterdir())
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    added = {p.name for p in purelib.iterdir()} - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"mlobs"}
    assert (purelib / "mlobs" / "py.typed").is_file()
    assert sysconfig.get_paths()["purelib"] != str(purelib)  # not this test's own environment
