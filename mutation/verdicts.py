"""mutmut's verdicts kept in the repository (mutation/verdicts.json), so that a fresh clone's
`make mutate` starts where the last committed run stopped instead of from nothing.

mutants/ is a cache on one machine (git-ignored, tens of MB of mutated copies); what is worth
keeping is small: per function, the hash of its source and the exit code of each of its mutants.
Before mutmut runs, the verdicts are written back as mutmut's own .meta files; mutmut then keeps
the verdicts of every function whose hash is unchanged and checks the others again
(mutmut/__main__.py, create_mutants_for_file)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mutmut.utils.format_utils import get_mutant_name

from mutation.results import MUTANTS

VERDICTS_FILE = Path(__file__).with_name("verdicts.json")
_NUMBER = "__mutmut_"


@dataclass
class FunctionVerdicts:
    """One function's source hash and its mutants' exit codes (index 0 is mutant 1; None: not
    checked)."""

    hash: str
    exit_codes: list[int | None] = field(default_factory=list)


def _meta_files(mutants_dir: Path) -> list[Path]:
    return sorted(mutants_dir.glob("mlobs/**/*.py.meta"))


def _function_and_number(mutant_name: str) -> tuple[str, int]:
    """The mangled function and the mutant's number: mlobs.spec.x_load_spec__mutmut_3 gives
    ("x_load_spec", 3)."""
    qualified, _, number = mutant_name.rpartition(_NUMBER)
    return qualified.rpartition(".")[2], int(number)


def read_cache(mutants_dir: Path = MUTANTS) -> dict[str, dict[str, FunctionVerdicts]]:
    """The verdicts in mutmut's cache: source file -> mangled function name -> verdicts."""
    found: dict[str, dict[str, FunctionVerdicts]] = {}
    for meta_path in _meta_files(mutants_dir):
        meta = json.loads(meta_path.read_text())
        hashes: dict[str, str] = meta.get("hash_by_function_name", {})
        functions = {name: FunctionVerdicts(digest) for name, digest in hashes.items()}
        for mutant_name, code in meta["exit_code_by_key"].items():
            function, number = _function_and_number(mutant_name)
            if function not in functions:
                continue  # no hash to tell whether the verdict still applies
            codes = functions[function].exit_codes
            codes.extend([None] * (number - len(codes)))
            codes[number - 1] = code
        source = meta_path.relative_to(mutants_dir).with_suffix("").as_posix()
        found[source] = {name: f for name, f in sorted(functions.items()) if f.exit_codes}
    return found


def save(mutants_dir: Path = MUTANTS, path: Path = VERDICTS_FILE) -> None:
    """Write the cache's verdicts to verdicts.json, one line per function for readable diffs."""
    files = {
        source: functions for source, functions in read_cache(mutants_dir).items() if functions
    }
    blocks = [
        f"  {json.dumps(source)}: {{\n"
        + ",\n".join(
            f"    {json.dumps(name, ensure_ascii=False)}: {json.dumps(asdict(kept))}"
            for name, kept in functions.items()
        )
        + "\n  }"
        for source, functions in files.items()
    ]
    path.write_text("{\n" + ",\n".join(blocks) + "\n}\n", encoding="utf-8")


def load(path: Path = VERDICTS_FILE) -> dict[str, dict[str, FunctionVerdicts]]:
    """verdicts.json as written by save() (empty when the file is missing)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        source: {name: FunctionVerdicts(**entry) for name, entry in functions.items()}
        for source, functions in data.items()
    }


def restore(mutants_dir: Path = MUTANTS, path: Path = VERDICTS_FILE) -> int:
    """Write the kept verdicts as mutmut .meta files where the cache has none; returns how many
    source files were restored. A cache that exists is newer than the file and is left alone."""
    restored = 0
    for source, functions in load(path).items():
        meta_path = mutants_dir / f"{source}.meta"
        if meta_path.exists():
            continue
        exit_codes = {
            get_mutant_name(Path(source), f"{name}{_NUMBER}{number}"): code
            for name, f in functions.items()
            for number, code in enumerate(f.exit_codes, start=1)
        }
        meta = {
            "exit_code_by_key": exit_codes,
            "hash_by_function_name": {name: f.hash for name, f in functions.items()},
            "type_check_error_by_key": {},
            "durations_by_key": {},
            "estimated_durations_by_key": {},
        }
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        restored += 1
    return restored
