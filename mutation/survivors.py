"""survivors.yaml: the surviving mutants explained by hand, each with the change it makes.

An entry says why a mutant survives: `equivalent` (behaves exactly like the original code; left
out of the score) or `accepted` (changes something no test should pin; counted as surviving).
mutmut numbers a function's mutants anew whenever the function changes, so a name alone would
then silently explain another mutant. Each entry therefore records the mutant's change (the
lines it removes and adds) and explains the surviving mutant of its function that makes that
change, whatever its number now. Only where the change is not known yet (a fresh clone before
mutmut has written its mutated copies) does the name decide.

`python -m mutation.survivors equivalent|accepted REASON NAME...` adds entries with their changes.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SURVIVORS_FILE = Path(__file__).with_name("survivors.yaml")
USAGE = "usage: python -m mutation.survivors equivalent|accepted REASON NAME..."
KINDS = ("equivalent", "accepted")
# The removed and added lines of a mutant, stripped of indentation: ("- old", "+ new").
Change = tuple[str, ...]


def change_of(diff: str) -> Change:
    """The removed and added lines of mutmut's diff of one mutant."""
    return tuple(
        f"{line[0]} {line[1:].strip()}"
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def function_of(mutant_name: str) -> str:
    """The mutated function's qualified mangled name: mlobs.spec.x_load_spec__mutmut_3 gives
    mlobs.spec.x_load_spec."""
    return mutant_name.rpartition("__mutmut_")[0]


@dataclass(frozen=True)
class Entry:
    """Why one mutant survives."""

    kind: str  # "equivalent" or "accepted"
    reason: str
    change: Change


@dataclass(frozen=True)
class Explained:
    """survivors.yaml's entries by mutant name (the name they were written for)."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def with_change(self, function: str, change: Change) -> list[str]:
        """The names of the entries of `function` with this change (a function may make the
        same change in two places)."""
        return [
            name
            for name, e in self.entries.items()
            if e.change == change and function_of(name) == function
        ]

    def find(self, mutant_name: str, change: Change) -> str | None:
        """The name of the entry explaining this surviving mutant: an entry of its function with
        its change (its own name first), or, when the change is not known, the entry of its name;
        None if none."""
        if not change:
            return mutant_name if mutant_name in self.entries else None
        names = self.with_change(function_of(mutant_name), change)
        return mutant_name if mutant_name in names else next(iter(names), None)

    def kind(self, mutant_name: str, change: Change) -> str | None:
        """The kind of the entry explaining this survivor ("equivalent" or "accepted"); None
        if nothing explains it."""
        name = self.find(mutant_name, change)
        return None if name is None else self.entries[name].kind


class SurvivorsFileError(ValueError):
    """survivors.yaml is not as this module writes it."""


def load_explained(path: Path = SURVIVORS_FILE) -> Explained:
    """survivors.yaml's entries (none when the file is missing)."""
    data = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    entries: dict[str, Entry] = {}
    for kind in KINDS:
        for name, body in (data.get(kind) or {}).items():
            if not isinstance(body, dict) or not body.get("change") or not body.get("reason"):
                raise SurvivorsFileError(f"{path.name}: {name} needs a change and a reason")
            entries[name] = Entry(kind, str(body["reason"]), tuple(body["change"]))
    return Explained(entries)


def _header(path: Path) -> str:
    """The comment lines at the top of the file, kept when it is written again."""
    if not path.is_file():
        return ""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(itertools.takewhile(lambda line: line.startswith("#"), lines))


def save_explained(explained: Explained, path: Path = SURVIVORS_FILE) -> None:
    """Write the entries, each kind sorted by name, below the file's header comments."""
    body = {
        kind: {
            name: {"change": list(e.change), "reason": e.reason}
            for name, e in sorted(explained.entries.items())
            if e.kind == kind
        }
        for kind in KINDS
    }
    text = yaml.safe_dump(body, sort_keys=False, width=10_000, allow_unicode=True)
    path.write_text(_header(path) + text)


def renamed(explained: Explained, changes: Mapping[str, Change]) -> dict[str, str]:
    """Entry name -> the name of the surviving mutant it explains now, where they differ
    (`changes`: each surviving mutant's change). Mutants of one function with the same change
    keep the entries of their names and share out the others."""
    groups: dict[tuple[str, Change], list[str]] = {}
    for mutant_name, change in changes.items():
        if change:
            groups.setdefault((function_of(mutant_name), change), []).append(mutant_name)
    moved: dict[str, str] = {}
    for (function, change), mutant_names in groups.items():
        entry_names = explained.with_change(function, change)
        free_entries = [n for n in entry_names if n not in mutant_names]
        free_mutants = [n for n in mutant_names if n not in entry_names]
        moved.update(zip(free_entries, free_mutants, strict=False))
    return moved


def with_names(explained: Explained, moved: Mapping[str, str]) -> Explained:
    """The entries under the names of the mutants they explain now. An entry that explains no
    mutant gives way when another moves to its name (that number makes another change now)."""
    staying = {n: e for n, e in explained.entries.items() if n not in moved}
    return Explained({**staying, **{moved[n]: explained.entries[n] for n in moved}})


def add(explained: Explained, kind: str, reason: str, changes: Mapping[str, Change]) -> Explained:
    """`explained` with an entry of `kind` and `reason` for each mutant of `changes`."""
    if kind not in KINDS:
        raise SurvivorsFileError(f"the kind is one of {', '.join(KINDS)}, not {kind!r}")
    new = {name: Entry(kind, reason, change) for name, change in changes.items()}
    return Explained({**explained.entries, **new})


def main(argv: list[str] | None = None) -> int:
    """Add entries for the named mutants, their changes read from mutmut's mutated copies."""
    from mutation.results import load_mutants, mutmut_diff  # results imports this module

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] not in KINDS:
        print(USAGE, file=sys.stderr)
        return 2
    kind, reason, names = args[0], args[1], args[2:]
    by_name = {m.name: m for m in load_mutants()}
    changes: dict[str, Change] = {}
    for name in names:
        if name not in by_name or not (change := change_of(mutmut_diff(by_name[name]))):
            print(f"no mutated copy of {name} in mutants/: run `make mutate`", file=sys.stderr)
            return 2
        changes[name] = change
    save_explained(add(load_explained(), kind, reason, changes))
    print(f"{len(changes)} {kind} entries written to {SURVIVORS_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
