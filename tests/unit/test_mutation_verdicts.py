"""mutation/verdicts.json: a fresh clone's `make mutate` keeps the committed verdicts of every
function whose source is unchanged and checks the changed functions again, with mutmut's own
mutant generation (not a model of it)."""

import json
import subprocess
import sys
from pathlib import Path

from mutation import verdicts
from mutation.results import load_mutants

# mutmut reads its configuration and mutants/ from the working directory: a process of its own.
GENERATE = (
    "from pathlib import Path\n"
    "from mutmut.__main__ import create_mutants_for_file\n"
    "create_mutants_for_file(Path('mlobs/tiny.py'), Path('mutants/mlobs/tiny.py'))\n"
)


def _project(root: Path, g_body: str) -> None:
    (root / "mlobs").mkdir(parents=True, exist_ok=True)
    (root / "mutants" / "mlobs").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["mlobs"]\n')
    (root / "mlobs" / "tiny.py").write_text(
        f"def f(a):\n    return a + 1\n\n\ndef g(a):\n    return {g_body}\n"
    )


def _mutmut_generates_mutants(root: Path) -> dict[str, int | None]:
    subprocess.run([sys.executable, "-c", GENERATE], cwd=root, check=True, timeout=60)
    return json.loads((root / "mutants/mlobs/tiny.py.meta").read_text())["exit_code_by_key"]


def _record_verdicts(root: Path, codes: dict[str, int]) -> None:
    meta_path = root / "mutants/mlobs/tiny.py.meta"
    meta = json.loads(meta_path.read_text())
    meta["exit_code_by_key"] = codes
    meta_path.write_text(json.dumps(meta))


def test_a_fresh_clone_keeps_the_verdicts_of_unchanged_functions_only(tmp_path):
    machine, clone = tmp_path / "machine", tmp_path / "clone"
    kept = tmp_path / "verdicts.json"
    _project(machine, "a * 2")
    assert set(_mutmut_generates_mutants(machine)) == {
        "mlobs.tiny.x_f__mutmut_1",
        "mlobs.tiny.x_f__mutmut_2",
        "mlobs.tiny.x_g__mutmut_1",
        "mlobs.tiny.x_g__mutmut_2",
    }
    _record_verdicts(
        machine,
        {
            "mlobs.tiny.x_f__mutmut_1": 1,  # killed
            "mlobs.tiny.x_f__mutmut_2": 0,  # survived
            "mlobs.tiny.x_g__mutmut_1": 1,
            "mlobs.tiny.x_g__mutmut_2": 1,
        },
    )
    verdicts.save(machine / "mutants", kept)

    # Another machine, g changed since: no mutants/ yet, only the committed file.
    _project(clone, "a * 3")
    assert verdicts.restore(clone / "mutants", kept) == 1
    assert _mutmut_generates_mutants(clone) == {
        "mlobs.tiny.x_f__mutmut_1": 1,
        "mlobs.tiny.x_f__mutmut_2": 0,
        "mlobs.tiny.x_g__mutmut_1": None,
        "mlobs.tiny.x_g__mutmut_2": None,
    }
    statuses = {m.name: m.status for m in load_mutants(clone / "mutants")}
    assert statuses["mlobs.tiny.x_f__mutmut_2"] == "survived"
    assert statuses["mlobs.tiny.x_g__mutmut_1"] == "not checked"

    # The machine's own cache is newer than the committed file: never overwritten.
    assert verdicts.restore(clone / "mutants", kept) == 0
    assert _mutmut_generates_mutants(clone)["mlobs.tiny.x_g__mutmut_1"] is None


def test_the_kept_file_has_one_line_per_function(tmp_path):
    _project(tmp_path, "a * 2")
    _mutmut_generates_mutants(tmp_path)
    _record_verdicts(tmp_path, {"mlobs.tiny.x_f__mutmut_2": 1, "mlobs.tiny.x_g__mutmut_1": 0})
    kept = tmp_path / "verdicts.json"
    verdicts.save(tmp_path / "mutants", kept)
    lines = kept.read_text().splitlines()
    assert [line.split(":")[0].strip() for line in lines if '"hash"' in line] == ['"x_f"', '"x_g"']
    assert {name: f.exit_codes for name, f in verdicts.load(kept)["mlobs/tiny.py"].items()} == {
        "x_f": [None, 1],
        "x_g": [0],
    }
