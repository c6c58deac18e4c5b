"""Long bad-input run: N cases (mutated specs through validate/show/code/diagram, mutated settings
through validate, flags and --set strings through argument parsing, experiment files through their
loader, corrupt data folders through run/eval/predict/compare, corrupt run folders through
report/eval/predict/run --resume/compare/export/init-from); prints counts per kind and outcome.

    .venv/bin/python scripts/fuzz_cli.py --cases 10000 [--seed 0] [--kinds data,runs]

Exit 1 when any case broke the promise (traceback, undocumented status, more than one line, or no
result within the per-case timeout).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzing import KINDS, fuzz_any, seed_specs  # noqa: E402
from tests.fuzzing_files import HANG  # noqa: E402

SPEC_COMMANDS = {"validate", "show", "code", "diagram"}


def family(command: str) -> str:
    """'specs' for the spec commands, else the first word ('data run' → 'data')."""
    return "specs" if command in SPEC_COMMANDS else command.split()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000, help="How many cases to run.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the mutations.")
    parser.add_argument("--kinds", default=",".join(dict.fromkeys(KINDS)),
                        help="Comma-separated kinds to draw from (spec, settings, flags, experiment, data, runs); "
                             "with all of them, spec cases are drawn twice as often.")
    args = parser.parse_args()
    wanted = args.kinds.split(",")
    kinds = tuple(k for k in KINDS if k in wanted) if set(wanted) <= set(KINDS) else None
    if not kinds:
        parser.error(f"--kinds: choose from {', '.join(dict.fromkeys(KINDS))}")
    rng, seeds, counts, broken = random.Random(args.seed), seed_specs(ROOT / "specs"), Counter(), []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            outcome = fuzz_any(seeds, rng, Path(tmp), kinds)
            kind = ("ok" if outcome.status == 0 else "one-line error" if outcome.kept_promise else
                    "HANG" if outcome.status == HANG else "BROKEN")
            counts[(family(outcome.command), kind)] += 1
            if family(outcome.command) != outcome.command and family(outcome.command) != "specs":
                counts[(outcome.command, kind)] += 1
            if not outcome.kept_promise:
                broken.append(outcome)
                print(f"case {i}: {outcome.command} after {outcome.mutation}: status {outcome.status}: "
                      f"{outcome.stderr.strip().splitlines()[-1:]}", file=sys.stderr, flush=True)
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} cases, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    for (command, kind), n in sorted(counts.items()):
        print(f"{command:16s} {kind:15s} {n}")
    print(f"total {args.cases} in {time.time() - started:.0f} s: {len(broken)} broke the promise")
    for outcome in broken[:20]:
        print(f"  {outcome.command} after {outcome.mutation}: status {outcome.status}: "
              f"{outcome.stderr.strip().splitlines()[-1:]}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
