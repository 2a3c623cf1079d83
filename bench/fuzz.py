"""The long fuzz run (issue 12): N generated cases over every fuzz target.

    python bench/fuzz.py --cases 10000 [--target NAME] [--seed S]

The targets are those of ``tests/fuzz`` (``all_targets()``: every
``targets_*.py`` module, so a new one is picked up without changes here).
The cases are spread evenly over the chosen targets; each target runs under
hypothesis with ``max_examples`` set to its share, generation only (no
shrinking), seeded by ``--seed`` so a run can be repeated. An exception that
escapes a target's ``run`` is *unhandled*: it is counted, not raised, and the
run goes on. At the end: one line per target (cases, unhandled, seconds),
then for each class of unhandled exception (its type and the innermost frame
in project code) the count and one example, and as the last line

    N cases, U unhandled

Exit status 0 when U = 0, else 1. (``tests/test_fuzz.py`` runs the same
targets briefly in the test suite.)
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz import FuzzTarget, all_targets  # noqa: E402

#: Folders of the project's own code, searched first for the frame that names a class.
SOURCE_FOLDERS = ("core", "app", "nodes")


@dataclass
class Tally:
    """What happened to one target's cases."""

    cases: int = 0
    unhandled: Counter = field(default_factory=Counter)  # class -> count
    examples: dict = field(default_factory=dict)  # class -> (message, case)
    seconds: float = 0.0


def fault_class(error: BaseException) -> str:
    """``Type at path:line (function)``: the innermost frame in the project's
    source, else in the repository (a harness assertion), else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if _in_repo(f.filename)]
    source = [f for f in ours if Path(f.filename).relative_to(ROOT).parts[0] in SOURCE_FOLDERS]
    frame = (source or ours or frames or [None])[-1]
    where = "?" if frame is None else \
        f"{_shown(frame.filename)}:{frame.lineno} ({frame.name})"
    return f"{type(error).__name__} at {where}"


def _in_repo(filename: str) -> bool:
    path = Path(filename)
    return path.is_relative_to(ROOT) and ".venv" not in path.parts


def _shown(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else filename


def fuzz(target: FuzzTarget, cases: int, run_seed: int) -> Tally:
    """Run ``cases`` generated cases of ``target``, counting what escapes."""
    tally = Tally()

    @seed(run_seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.cases)
    def one_case(case) -> None:
        tally.cases += 1
        try:
            target.run(case)
        except Exception as error:  # the point: count it, keep going
            name = fault_class(error)
            tally.unhandled[name] += 1
            tally.examples.setdefault(name, (_first_line(error), _brief(case)))

    started = time.perf_counter()
    one_case()
    tally.seconds = time.perf_counter() - started
    return tally


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return ascii(text[0][:300]) if text else "(no message)"


def _brief(case) -> str:
    """The case, printable on any terminal, cut to a readable length."""
    try:
        text = ascii(case)
    except RecursionError:  # a value nested too deep to repr
        text = f"<{type(case).__name__} nested too deep to print>"
    return text if len(text) <= 400 else text[:400] + f"... ({len(text)} characters)"


def shares(total: int, count: int) -> list[int]:
    """``total`` cases split over ``count`` targets as evenly as whole numbers allow."""
    return [total // count + (1 if index < total % count else 0) for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, required=True, help="total generated cases")
    parser.add_argument("--target", action="append",
                        help="only this target (repeatable); default: all of them")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    args = parser.parse_args(argv)
    targets = all_targets()
    if args.target:
        known = {t.name for t in targets}
        unknown = sorted(set(args.target) - known)
        if unknown:
            parser.error(f"unknown target(s) {', '.join(unknown)}; the targets are "
                         f"{', '.join(sorted(known))}")
        targets = [t for t in targets if t.name in args.target]
    total_cases = total_unhandled = 0
    classes: dict[str, tuple[int, str, str]] = {}
    for target, share in zip(targets, shares(args.cases, len(targets))):
        tally = fuzz(target, share, args.seed) if share else Tally()
        unhandled = sum(tally.unhandled.values())
        print(f"{target.name:22} {tally.cases:7} cases {unhandled:6} unhandled "
              f"{tally.seconds:8.1f} s", flush=True)
        total_cases += tally.cases
        total_unhandled += unhandled
        for name, count in tally.unhandled.items():
            message, case = tally.examples[name]
            seen, message, example = classes.get(name, (0, message, f"[{target.name}] {case}"))
            classes[name] = (seen + count, message, example)
    for name, (count, message, example) in sorted(classes.items(), key=lambda c: -c[1][0]):
        print(f"\n{count} x {name}\n  message: {message}\n  example: {example}")
    print(f"{total_cases} cases, {total_unhandled} unhandled")
    return 0 if total_unhandled == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
