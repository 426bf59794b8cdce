"""What mutmut's cache in mutants/ says: each mutant's status, its place in the source, the score.

A mutant is killed when a test failed against it, timed out, or the tests' process died by a
signal; it survives when every selected test passed, or when no test ran its function at all.
survivors.yaml explains survivors (mutation/survivors.py): an `equivalent` mutant leaves the
score's denominator; an `accepted` one still counts as surviving."""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mutmut.stats import status_by_exit_code

from mutation.survivors import Change, Explained

REPO = Path(__file__).resolve().parent.parent
MUTANTS = REPO / "mutants"

# mutmut's verdicts (mutmut.stats.status_by_exit_code) folded into what the score needs; a verdict
# missing here (a new one) counts as surviving.
_VERDICTS = {
    "killed": "killed",
    "timeout": "killed",  # an endless loop is caught too
    "segfault": "killed",
    "caught by type check": "killed",
    "survived": "survived",
    "no tests": "no tests",
    "not checked": "not checked",
    "check was interrupted by user": "not checked",  # the budget ran out during it
    "skipped": "not checked",
}
_SEPARATOR = "ǁ"  # mutmut's class separator in mangled names: xǁClassǁmethod


@dataclass(frozen=True)
class Mutant:
    """One mutant and its verdict ("killed", "survived", "no tests" or "not checked")."""

    name: str
    source: Path  # relative to the repository, e.g. mlobs/spec.py
    status: str
    # Killed by mutmut's timeout: an endless loop, or a test that hangs for another reason.
    timed_out: bool = False

    @property
    def function(self) -> tuple[str | None, str]:
        """(class or None, function) the mutant changes."""
        mangled = self.name.partition("__mutmut_")[0].rpartition(".")[2]
        if mangled.startswith("x_"):
            return None, mangled[2:]
        _, cls, func = mangled.split(_SEPARATOR)
        return cls, func


def _status(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        # The test process died by a signal (mutmut calls all but SIGSEGV and SIGKILL
        # "suspicious"): e.g. a mutant whose shutdown raised SIGTERM with its default action in
        # the tests' own process. The tests could not pass, so `make test` fails: killed.
        return "killed"
    return _VERDICTS.get(status_by_exit_code[exit_code], "suspicious")


def load_mutants(mutants_dir: Path = MUTANTS) -> list[Mutant]:
    """Every mutant mutmut generated, with its cached verdict."""
    found = []
    for meta in sorted(mutants_dir.glob("mlobs/**/*.py.meta")):
        source = meta.relative_to(mutants_dir).with_suffix("")
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        found += [
            Mutant(name, source, _status(code), status_by_exit_code[code] == "timeout")
            for name, code in exit_codes.items()
        ]
    return found


@dataclass(frozen=True)
class Score:
    killed: int
    surviving: int  # survived, no tests or suspicious, not equivalent
    equivalent: int
    not_checked: int

    @property
    def percent(self) -> float:
        """Killed share of the checked, non-equivalent mutants."""
        checked = self.killed + self.surviving
        return 100.0 * self.killed / checked if checked else 0.0


def score(mutants: list[Mutant], explained: Explained, changes: Mapping[str, Change]) -> Score:
    """Count verdicts; a checked equivalent survivor counts nowhere but in `equivalent`.
    `changes`: each surviving mutant's change, where known."""
    counts = {"killed": 0, "surviving": 0, "equivalent": 0, "not checked": 0}
    for mutant in mutants:
        if mutant.status in ("killed", "not checked"):
            counts[mutant.status] += 1
        elif explained.kind(mutant.name, changes.get(mutant.name, ())) == "equivalent":
            counts["equivalent"] += 1
        else:
            counts["surviving"] += 1
    return Score(counts["killed"], counts["surviving"], counts["equivalent"], counts["not checked"])


@cache
def _source(source: Path) -> tuple[list[str], dict[tuple[str | None, str], ast.AST]]:
    """A source file's lines and its functions and methods by (class or None, name)."""
    text = (REPO / source).read_text()
    tree = ast.parse(text)
    found: dict[tuple[str | None, str], ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[None, node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[node.name, item.name] = item
    return text.splitlines(), found


_HUNK = re.compile(r"^@@ -(\d+)")


def changed_line(mutant: Mutant, diff: str) -> int:
    """The line of the original source that `diff` (mutmut's diff of one function) changes."""
    lines, functions = _source(mutant.source)
    node = functions.get(mutant.function)
    if node is None:
        return 0
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    offset, removed = 0, ""
    for line in diff.splitlines():
        if match := _HUNK.match(line):
            offset = int(match[1]) - 1
        elif line.startswith("-") and not line.startswith("---"):
            removed = line[1:].strip()
            break
        elif line.startswith(" "):
            offset += 1
    # The diff counts from the function's first line; comments above it shift the count, so
    # take the line with the removed text nearest to where the count points.
    guess = first + offset
    candidates = [
        number
        for number in range(first, node.end_lineno + 1)
        if lines[number - 1].strip() == removed
    ]
    return min(candidates, key=lambda number: abs(number - guess), default=guess)


def mutmut_diff(mutant: Mutant) -> str:
    """mutmut's diff of the mutated function against the original ("" before mutmut has written
    the mutated copy, e.g. when only verdicts.json's verdicts are there yet)."""
    if not (MUTANTS / mutant.source).is_file():
        return ""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    old_cwd = Path.cwd()
    os.chdir(REPO)  # mutmut reads mutants/ relative to the working directory
    try:
        return get_diff_for_mutant(mutant.name, path=mutant.source)
    finally:
        os.chdir(old_cwd)


def is_survivor(mutant: Mutant) -> bool:
    """Checked, and no test killed it."""
    return mutant.status not in ("killed", "not checked")


def survivor_diffs(mutants: list[Mutant]) -> dict[str, str]:
    """mutmut's diff of each surviving mutant ("" where its mutated copy is not there yet)."""
    return {m.name: mutmut_diff(m) for m in mutants if is_survivor(m)}


def surviving(
    mutants: list[Mutant], explained: Explained, changes: Mapping[str, Change]
) -> Iterator[Mutant]:
    """Checked mutants that no test killed and survivors.yaml does not explain, in source order."""
    for mutant in mutants:
        change = changes.get(mutant.name, ())
        if is_survivor(mutant) and explained.find(mutant.name, change) is None:
            yield mutant
