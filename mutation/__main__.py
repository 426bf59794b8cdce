"""`make mutate`: run mutmut over mlobs/ within a time budget, then print the score and survivors.

    python -m mutation [--minutes 60] [--children N] [--fresh] [--report-only]

A run first retries the mutants that survived earlier runs (the tests may have changed since),
then checks the mutants not checked yet; whatever the budget leaves undone waits in the cache
(mutants/) for the next run. mutmut checks a function's mutants again when the function changes.
The verdicts are also kept in mutation/verdicts.json (commit it): a fresh clone starts from them."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from mutation import verdicts
from mutation.results import (
    MUTANTS,
    REPO,
    changed_line,
    load_mutants,
    score,
    surviving,
    survivor_diffs,
)
from mutation.survivors import (
    Change,
    change_of,
    load_explained,
    renamed,
    save_explained,
    with_names,
)

MUTMUT = Path(sys.executable).with_name("mutmut")
# Names per `mutmut run` call when retrying survivors: well below the kernel's argument limit.
RETRY_BATCH = 500


def drop_stale_copies() -> None:
    """Delete mutmut's copies of the tests and the stack's files: it copies them again at every
    run but never deletes, so a test file deleted here would keep running there."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in ["tests", *config.get("also_copy", [])]:
        copy = MUTANTS / name
        if copy.is_dir():
            shutil.rmtree(copy)
        elif copy.exists():
            copy.unlink()


def _bytecode_allowed() -> dict[str, str]:
    """The environment with bytecode caching on. Each mutant's run imports the mutated modules
    again (mutation/pytest_plugin.py), and mutants/ holds every mutant of a file in one module:
    compiled anew each time, that took about 2 of the 2.5 s a typical mutant needs."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_mutmut(names: list[str], deadline: float, children: int | None = None) -> bool:
    """`mutmut run [names]` until it ends or the deadline passes; False if the budget ran out."""
    drop_stale_copies()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    options = [] if children is None else ["--max-children", str(children)]
    # Its own session: a Ctrl-C in the terminal reaches it only through stop() below.
    process = subprocess.Popen(
        [str(MUTMUT), "run", *options, *names],
        cwd=REPO,
        env=_bytecode_allowed(),
        start_new_session=True,
    )
    try:
        process.wait(timeout=remaining)
        return True
    except subprocess.TimeoutExpired:
        print(f"\n>> time budget used up: stopping mutmut (results so far are kept in {MUTANTS})")
        stop(process)
        return False
    except KeyboardInterrupt:
        stop(process)
        raise


def stop(process: subprocess.Popen) -> None:
    """Stop mutmut and its workers without a false verdict; finished verdicts are saved already."""
    # mutmut first (it does not stop on SIGINT while it waits for a worker): a worker killed
    # while mutmut still ran would be recorded as a killed mutant.
    process.kill()
    process.wait()
    with contextlib.suppress(ProcessLookupError):  # no worker was running
        os.killpg(process.pid, signal.SIGKILL)


def retry_names() -> list[str]:
    """Mutants that survived an earlier run and that survivors.yaml does not explain."""
    if not MUTANTS.is_dir():
        return []
    mutants = load_mutants()
    changes = {name: change_of(diff) for name, diff in survivor_diffs(mutants).items()}
    return [m.name for m in surviving(mutants, load_explained(), changes)]


def update_names(changes: dict[str, Change]) -> None:
    """Rename survivors.yaml's entries after the mutants they explain now (mutmut renumbered
    their functions), so the names stay right for a fresh clone's first run."""
    explained = load_explained()
    if moved := renamed(explained, changes):
        save_explained(with_names(explained, moved))
        print(f">> {len(moved)} entries of survivors.yaml renamed after their mutants: commit it")


def report() -> None:
    """Print every unexplained surviving mutant with file:line, the verdicts per file, the score."""
    mutants = load_mutants()
    diffs = survivor_diffs(mutants)
    changes = {name: change_of(diff) for name, diff in diffs.items()}
    update_names(changes)
    explained = load_explained()
    print("\nSurviving mutants that survivors.yaml does not explain (file:line, mutant, change):")
    for mutant in surviving(mutants, explained, changes):
        diff = diffs[mutant.name]
        print(f"  {mutant.source}:{changed_line(mutant, diff)}  {mutant.name}  [{mutant.status}]")
        for line in change_of(diff):
            print(f"      {line[:120]}")
    print("\nPer file (killed / checked, equivalent mutants left out):")
    for source in sorted({m.source for m in mutants}):
        of_source = [m for m in mutants if m.source == source]
        part = score(of_source, explained, changes)
        unchecked = f", {part.not_checked} not checked" if part.not_checked else ""
        timed_out = sum(m.timed_out for m in of_source)
        by_timeout = f" ({timed_out} by timeout)" if timed_out else ""
        print(f"  {source}: {part.killed}/{part.killed + part.surviving}{by_timeout}{unchecked}")
    used = {explained.find(name, change) for name, change in changes.items()}
    if unused := sorted(set(explained.entries) - used):
        print(
            "\nsurvivors.yaml entries that explain no surviving mutant (killed by a newer test, "
            f"their code changed, or not checked yet): {unused}"
        )
    result = score(mutants, explained, changes)
    accepted = sum(explained.kind(name, c) == "accepted" for name, c in changes.items())
    if timed_out := [m for m in mutants if m.timed_out]:
        # A hang in the tests' own set-up looks the same; a run of timeouts deserves a look.
        print(f"\nKilled by timeout (an endless loop, or a hanging test?): {len(timed_out)}")
    print(
        f"\nMutation score: {result.percent:.1f} % ({result.killed} killed of "
        f"{result.killed + result.surviving} checked; {accepted} of the survivors accepted in "
        f"mutation/survivors.yaml; {result.equivalent} equivalent left out; "
        f"{result.not_checked} not checked yet)"
    )


def check(deadline: float, children: int | None) -> None:
    """Retry the unexplained survivors, then check new mutants, until the deadline."""
    names = retry_names()
    if names:
        print(f">> retrying {len(names)} mutants that survived earlier runs")
    finished = all(
        run_mutmut(names[i : i + RETRY_BATCH], deadline, children)
        for i in range(0, len(names), RETRY_BATCH)
    )
    if finished:
        print(">> checking the mutants not checked yet")
        run_mutmut([], deadline, children)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60, help="time budget (default 60)")
    parser.add_argument(
        "--children",
        type=int,
        help="mutants tested at once (default: one per core). The request path's tests mostly"
        " wait on servers and timers, so more than the cores keeps them busy; too many and"
        " timing-bound tests fail for want of CPU, which hides survivors as false kills",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="forget every cached result first (mutants/ and verdicts.json)",
    )
    parser.add_argument("--report-only", action="store_true", help="print the cached results")
    args = parser.parse_args(argv)
    if not args.report_only:
        if args.fresh:
            shutil.rmtree(MUTANTS, ignore_errors=True)
        elif restored := verdicts.restore():
            print(f">> {restored} files' verdicts taken from {verdicts.VERDICTS_FILE.name}")
        try:
            check(time.monotonic() + args.minutes * 60, args.children)
        finally:  # a Ctrl-C keeps what was checked too
            verdicts.save()
            print(f">> verdicts saved in {verdicts.VERDICTS_FILE.relative_to(REPO)}: commit it")
    if not MUTANTS.is_dir():
        print("no results yet: run `make mutate`", file=sys.stderr)
        return 1
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
