"""The mutation score of each pure core after `mutmut run`, checked against the 90 % floor.

`make mutate` runs this after mutmut. It reads the files mutmut mutated (`source_paths` of
`[tool.mutmut]` in pyproject.toml) and the verdicts mutmut left in `mutants/<file>.meta`, and the
mutants declared equivalent in `tests/mutation/equivalent.toml`. For each file:

    killed     = mutants a test failed on, or that ran out of time (an endless loop is noticed)
    equivalent = declared equivalent mutants of the file (each one must have survived)
    score      = killed / (total - equivalent)

Every other verdict counts against the file: survived, no tests (no unit test reaches the code),
not checked, suspicious, segfault. It prints one row per file and the surviving mutants not
declared equivalent (`mutmut show NAME` prints a mutant's diff), and exits 1 when a file scores
below 90 %, when a file has no verdicts, or when a declared equivalent mutant no longer exists
or no longer survives (then the declaration is wrong or stale and must go), so that the list
stays true. Exit 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

FLOOR = 0.90
ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.toml")

# mutmut 3.8's exit codes (mutmut/stats.py): 1 and 3 are failing test runs; these are timeouts.
KILLED_CODES = frozenset({1, 3})
TIMEOUT_CODES = frozenset({24, -24, 36, 152, 255})
SURVIVED_CODE = 0


@dataclass
class FileScore:
    """The verdicts of one mutated file."""

    path: str
    total: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    other: dict[str, int | None] = field(default_factory=dict)  # name -> exit code, None: not run

    @property
    def score(self) -> float:
        """killed / (total - equivalent); 1.0 when every mutant is equivalent."""
        judged = self.total - self.equivalent
        return self.killed / judged if judged else 1.0


def source_paths(root: Path) -> list[str]:
    """The files `[tool.mutmut] source_paths` names, relative to the repository root."""
    with (root / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f)["tool"]["mutmut"]
    return [str(p) for p in config["source_paths"]]


def load_equivalent(path: Path) -> dict[str, str]:
    """Declared equivalent mutants: name -> why. ValueError on a malformed or duplicate entry."""
    with path.open("rb") as f:
        entries = tomllib.load(f).get("equivalent", [])
    declared: dict[str, str] = {}
    for entry in entries:
        name, why = entry.get("mutant"), entry.get("why")
        if not isinstance(name, str) or not isinstance(why, str) or not why.strip():
            raise ValueError(f"{path.name}: every entry needs a `mutant` and a `why`: {entry!r}")
        if name in declared:
            raise ValueError(f"{path.name}: {name} is declared twice")
        declared[name] = why
    return declared


def score_file(path: str, verdicts: dict[str, int | None], equivalent: dict[str, str]) -> FileScore:
    """Count the verdicts of one file's mutants."""
    result = FileScore(path, total=len(verdicts))
    for name, code in sorted(verdicts.items(), key=lambda item: _natural(item[0])):
        if code in KILLED_CODES or code in TIMEOUT_CODES:
            result.killed += 1
        elif code == SURVIVED_CODE and name in equivalent:
            result.equivalent += 1
        elif code == SURVIVED_CODE:
            result.survivors.append(name)
        else:
            result.other[name] = code
    return result


def _natural(name: str) -> tuple[str, int]:
    """Sort `f__mutmut_10` after `f__mutmut_9`."""
    stem, _, number = name.rpartition("_")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def main(argv: list[str] | None = None) -> int:
    """Print the table and the survivors; the exit status says whether the floor holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (mutants/ in it)")
    args = parser.parse_args(argv)
    root: Path = args.root

    equivalent = load_equivalent(EQUIVALENT)
    problems: list[str] = []
    scores: list[FileScore] = []
    seen: dict[str, int | None] = {}
    for path in source_paths(root):
        meta = root / "mutants" / f"{path}.meta"
        if not meta.exists():
            problems.append(f"{path}: no verdicts in {meta.relative_to(root)} (did mutmut run?)")
            continue
        verdicts: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        seen.update(verdicts)
        scores.append(score_file(path, verdicts, equivalent))

    print(f"{'file':<32} {'killed':>7} {'total':>6} {'equiv':>6} {'score':>7}")
    for s in scores:
        print(f"{s.path:<32} {s.killed:>7} {s.total:>6} {s.equivalent:>6} {s.score:>7.1%}")
        if s.score < FLOOR:
            problems.append(f"{s.path}: {s.score:.1%} of mutants killed, below {FLOOR:.0%}")
    all_killed = sum(s.killed for s in scores)
    all_judged = sum(s.total - s.equivalent for s in scores)
    if all_judged:
        print(
            f"{'all':<32} {all_killed:>7} {sum(s.total for s in scores):>6} "
            f"{sum(s.equivalent for s in scores):>6} {all_killed / all_judged:>7.1%}"
        )

    for s in scores:
        for name in s.survivors:
            print(f"survived: {name}")
        for name, code in s.other.items():
            print(f"not killed ({'not run' if code is None else f'exit {code}'}): {name}")
    for name in equivalent:
        if name not in seen:
            problems.append(f"equivalent.toml: {name} is not a mutant any more; remove it")
        elif seen[name] != SURVIVED_CODE:
            problems.append(
                f"equivalent.toml: {name} did not survive (exit {seen[name]}); remove it"
            )

    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if any(s.survivors for s in scores):
        print("`.venv/bin/mutmut show NAME` prints a mutant's diff.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
