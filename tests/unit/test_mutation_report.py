"""`make mutate`'s report: the verdicts it reads from mutmut's cache, the score, file:line."""

import ast
import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mutation.results import Mutant, changed_line, load_mutants, score, surviving
from mutation.survivors import Entry, Explained
from tests.conftest import REPO


def _cache(tmp_path: Path, exit_codes: dict[str, int | None]) -> Path:
    """A mutants/ directory as mutmut leaves it, for mlobs/spec.py."""
    meta = tmp_path / "mlobs" / "spec.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": exit_codes, "durations_by_key": {}}))
    return tmp_path


def test_equivalent_mutants_leave_the_score_and_accepted_ones_count_as_surviving(tmp_path):
    codes = {
        "mlobs.spec.x_load_spec__mutmut_1": 1,  # a test failed
        "mlobs.spec.x_load_spec__mutmut_2": 36,  # timed out: an endless loop is caught too
        "mlobs.spec.x_load_spec__mutmut_3": 0,  # every test passed
        "mlobs.spec.x_load_spec__mutmut_4": 33,  # no test runs the function
        "mlobs.spec.x_load_spec__mutmut_5": 0,  # passes, but behaves as the original
        "mlobs.spec.x_load_spec__mutmut_6": None,  # budget ran out before it
        "mlobs.spec.x_load_spec__mutmut_7": 0,  # passes; changes nothing a test should pin
        "mlobs.spec.x_load_spec__mutmut_8": None,  # explained once, not checked since its change
        "mlobs.spec.x_load_spec__mutmut_9": -15,  # the tests' process died by SIGTERM
    }
    mutants = load_mutants(_cache(tmp_path, codes))
    assert {m.name.rsplit("_", 1)[1]: m.status for m in mutants} == {
        "1": "killed",
        "2": "killed",
        "3": "survived",
        "4": "no tests",
        "5": "survived",
        "6": "not checked",
        "7": "survived",
        "8": "not checked",
        "9": "killed",
    }
    assert [m.name for m in mutants if m.timed_out] == ["mlobs.spec.x_load_spec__mutmut_2"]
    explained = Explained(
        {
            "mlobs.spec.x_load_spec__mutmut_5": Entry("equivalent", "same output", ("- a", "+ b")),
            "mlobs.spec.x_load_spec__mutmut_8": Entry("equivalent", "before a change", ("- c",)),
            "mlobs.spec.x_load_spec__mutmut_7": Entry("accepted", "wording", ("- d", "+ e")),
        }
    )
    changes = {  # what mutmut's copies say each survivor changes
        "mlobs.spec.x_load_spec__mutmut_3": ("- f", "+ g"),
        "mlobs.spec.x_load_spec__mutmut_4": ("- h", "+ i"),
        "mlobs.spec.x_load_spec__mutmut_5": ("- a", "+ b"),
        "mlobs.spec.x_load_spec__mutmut_7": ("- d", "+ e"),
    }
    result = score(mutants, explained, changes)
    assert (result.killed, result.surviving, result.equivalent, result.not_checked) == (3, 3, 1, 2)
    assert result.percent == 50.0
    assert [m.name for m in surviving(mutants, explained, changes)] == [
        "mlobs.spec.x_load_spec__mutmut_3",
        "mlobs.spec.x_load_spec__mutmut_4",
    ]


def test_a_mutant_is_located_on_the_source_line_it_changes():
    # One line of a real function changed, in the form of mutmut's diff (the function only).
    source = REPO / "mlobs/spec.py"
    lines = source.read_text().splitlines()
    tree = ast.parse(source.read_text())
    function = next(n for n in tree.body if getattr(n, "name", None) == "_positive_duration")
    original = lines[function.lineno - 1 : function.end_lineno]
    target = next(i for i, line in enumerate(original) if "<= 0" in line)
    mutated = [*original]
    mutated[target] = mutated[target].replace("<= 0", "< 0")
    diff = "\n".join(difflib.unified_diff(original, mutated, "a", "b", lineterm=""))
    mutant = Mutant("mlobs.spec.x__positive_duration__mutmut_2", Path("mlobs/spec.py"), "survived")
    line = changed_line(mutant, diff)
    assert "<= 0" in lines[line - 1]
    assert line == function.lineno + target


def test_the_report_lists_survivors_before_mutmut_has_written_its_copies(tmp_path):
    """A fresh clone has verdicts (restored from verdicts.json) but none of mutmut's mutated
    copies yet: `--report-only` still names each survivor by file and function line, without a
    diff, instead of failing."""
    shutil.copytree(REPO / "mutation", tmp_path / "mutation")
    # A source of our own: under mutmut, the repository's mlobs/ holds the mutated copies.
    (tmp_path / "mlobs").mkdir()
    (tmp_path / "mlobs/spec.py").write_text(
        '"""Specs."""\n\n\ndef load_spec(path):\n    return path\n'
    )
    survivor = "mlobs.spec.x_load_spec__mutmut_3"
    _cache(tmp_path / "mutants", {"mlobs.spec.x_load_spec__mutmut_1": 1, survivor: 0})
    done = subprocess.run(
        [sys.executable, "-m", "mutation", "--report-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = done.stdout.split("Surviving mutants", 1)[1].split("Per file", 1)[0]
    # Line 4: the function's `def` (no diff to find the changed line in).
    assert listed.splitlines()[1:] == [f"  mlobs/spec.py:4  {survivor}  [survived]", ""]
    assert "Mutation score: 50.0 % (1 killed of 2 checked" in done.stdout
