"""survivors.yaml: an explanation follows its mutant's change, not mutmut's number for it, which
changes whenever the function does (mutation/survivors.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mutation.survivors import (
    SURVIVORS_FILE,
    USAGE,
    Entry,
    Explained,
    SurvivorsFileError,
    add,
    change_of,
    load_explained,
    renamed,
    save_explained,
    with_names,
)
from tests.conftest import REPO

LOAD = "mlobs.spec.x_load_spec__mutmut_"
OTHER = "mlobs.spec.x__positive_duration__mutmut_"
WORDING = ("- raise SpecError(f'{path}: bad')", "+ raise SpecError(f'XX{path}: badXX')")
DEFAULT = ("- return load(path, strict=True)", "+ return load(path, )")


def _explained() -> Explained:
    return Explained(
        {
            f"{LOAD}3": Entry("accepted", "an error message's wording", WORDING),
            f"{LOAD}7": Entry("equivalent", "strict=True is the default", DEFAULT),
        }
    )


def test_an_entry_explains_its_functions_mutant_with_its_change_whatever_its_number():
    explained = _explained()
    # The function changed above both lines: mutmut now numbers the two mutants 4 and 9.
    assert explained.kind(f"{LOAD}4", WORDING) == "accepted"
    assert explained.kind(f"{LOAD}9", DEFAULT) == "equivalent"
    # Number 3 now makes another change: the entry written for 3 does not explain it.
    assert explained.kind(f"{LOAD}3", ("- return path", "+ return None")) is None
    # The same change in another function is another mutant.
    assert explained.kind(f"{OTHER}3", WORDING) is None


def test_before_mutmut_has_written_its_copies_the_name_decides():
    """A fresh clone's verdicts come from verdicts.json; the changes need mutmut's copies."""
    explained = _explained()
    assert explained.kind(f"{LOAD}3", ()) == "accepted"
    assert explained.kind(f"{LOAD}4", ()) is None


def test_entries_are_renamed_after_the_mutants_they_explain_now():
    explained = _explained()
    # Swapped numbers, as when a line moves above another.
    changes = {f"{LOAD}7": WORDING, f"{LOAD}3": DEFAULT, f"{LOAD}1": ("- x", "+ y")}
    moved = renamed(explained, changes)
    assert moved == {f"{LOAD}3": f"{LOAD}7", f"{LOAD}7": f"{LOAD}3"}
    after = with_names(explained, moved)
    assert after.entries == {
        f"{LOAD}7": Entry("accepted", "an error message's wording", WORDING),
        f"{LOAD}3": Entry("equivalent", "strict=True is the default", DEFAULT),
    }
    assert renamed(after, changes) == {}


def test_two_mutants_making_the_same_change_keep_their_own_entries():
    """A function may make one change in two places (the same line twice): each mutant keeps
    the entry of its name, and an entry whose number moved goes to the mutant left over."""
    explained = Explained(
        {
            f"{LOAD}2": Entry("accepted", "wording", WORDING),
            f"{LOAD}5": Entry("accepted", "wording", WORDING),
        }
    )
    assert explained.find(f"{LOAD}2", WORDING) == f"{LOAD}2"
    assert explained.find(f"{LOAD}5", WORDING) == f"{LOAD}5"
    moved = renamed(explained, {f"{LOAD}2": WORDING, f"{LOAD}6": WORDING})
    assert moved == {f"{LOAD}5": f"{LOAD}6"}
    assert set(with_names(explained, moved).entries) == {f"{LOAD}2", f"{LOAD}6"}


def test_an_entry_that_explains_nothing_gives_way_to_one_that_moves_to_its_name():
    explained = _explained()
    moved = renamed(explained, {f"{LOAD}7": WORDING})  # 7 makes 3's change; 7's own is gone
    assert with_names(explained, moved).entries == {f"{LOAD}7": explained.entries[f"{LOAD}3"]}


def test_a_change_is_the_removed_and_added_lines_of_mutmuts_diff():
    diff = (
        "--- mlobs/spec.py\n+++ mlobs/spec.py\n@@ -1,3 +1,3 @@\n def f(x):\n"
        "-    return x + 1\n+    return x - 1\n"
    )
    assert change_of(diff) == ("- return x + 1", "+ return x - 1")
    assert change_of("") == ()


def test_the_file_is_written_back_with_its_header_and_read_the_same(tmp_path):
    path = tmp_path / "survivors.yaml"
    path.write_text("# why this file exists\n#\nequivalent: {}\naccepted: {}\n")
    explained = add(_explained(), "equivalent", "a third reason", {f"{OTHER}1": ("- a", "+ b")})
    save_explained(explained, path)
    text = path.read_text()
    assert text.startswith("# why this file exists\n#\nequivalent:\n")
    assert load_explained(path) == explained
    # Each kind sorted by name, so that an added entry is a small diff.
    assert text.index(f"{OTHER}1") < text.index(f"{LOAD}7") < text.index("accepted:")


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("equivalent:\n  m__mutmut_1: a reason without its change\n", "m__mutmut_1"),
        ("accepted:\n  m__mutmut_2:\n    change: ['- a']\n", "m__mutmut_2"),
    ],
)
def test_an_entry_needs_its_change_and_a_reason(tmp_path, body, name):
    path = tmp_path / "survivors.yaml"
    path.write_text(body)
    with pytest.raises(SurvivorsFileError, match=f"^survivors.yaml: {name} needs a change"):
        load_explained(path)
    with pytest.raises(SurvivorsFileError, match="one of equivalent, accepted, not 'fine'"):
        add(Explained(), "fine", "why", {name: ("- a",)})


def test_the_committed_file_gives_every_entry_its_change_and_is_as_save_writes_it(tmp_path):
    explained = load_explained()
    assert explained.entries and all(e.change for e in explained.entries.values())
    copy = tmp_path / "survivors.yaml"
    copy.write_text(SURVIVORS_FILE.read_text())
    save_explained(explained, copy)
    assert copy.read_text() == SURVIVORS_FILE.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # A fresh clone has no mutated copies to read a change from.
        (
            ["accepted", "why", f"{LOAD}1"],
            f"no mutated copy of {LOAD}1 in mutants/: run `make mutate`",
        ),
        (["fine", "why", f"{LOAD}1"], USAGE),
        (["accepted", f"{LOAD}1"], USAGE),
    ],
    ids=["no mutated copy", "unknown kind", "no reason"],
)
def test_adding_entries_refuses_what_it_cannot_write_and_writes_nothing(tmp_path, args, message):
    shutil.copytree(REPO / "mutation", tmp_path / "mutation")
    before = (tmp_path / "mutation/survivors.yaml").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "mutation.survivors", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (2, message + "\n")
    assert (tmp_path / "mutation/survivors.yaml").read_text() == before
