"""Long bad-input run: N cases (mutated specs through validate/show/code/diagram, mutated settings
through validate, flags and --set strings through argument parsing, experiment files through their
loader); prints counts per kind and outcome.

    .venv/bin/python scripts/fuzz_cli.py --cases 10000 [--seed 0]

Exit 1 when any case broke the promise (traceback, undocumented status, more than one line).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzing import fuzz_any, seed_specs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000, help="How many cases to run.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the mutations.")
    args = parser.parse_args()
    rng, seeds, counts, broken = random.Random(args.seed), seed_specs(ROOT / "specs"), Counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.cases):
            outcome = fuzz_any(seeds, rng, Path(tmp))
            counts[(outcome.command, "ok" if outcome.status == 0 else
                    "one-line error" if outcome.kept_promise else "BROKEN")] += 1
            if not outcome.kept_promise:
                broken.append(outcome)
    for (command, kind), n in sorted(counts.items()):
        print(f"{command:10s} {kind:15s} {n}")
    print(f"total {args.cases}: {len(broken)} broke the promise")
    for outcome in broken[:20]:
        print(f"  {outcome.command} after {outcome.mutation}: status {outcome.status}: "
              f"{outcome.stderr.strip().splitlines()[-1:]}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
