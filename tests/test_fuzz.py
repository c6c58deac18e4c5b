"""Mutated specs, settings, flags and experiment files through the CLI and its loaders: every
outcome is success or one documented error line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fuzzing import fuzz_one, seed_specs

SPECS = Path(__file__).resolve().parents[1] / "specs"
CASES = 300


def test_seeds_are_valid(tmp_path):
    from tests.fuzzing import run_case
    seeds = seed_specs(SPECS)
    assert len(seeds) >= 3
    for seed in seeds:
        assert run_case(seed, ["validate"], tmp_path)[0] == 0


@pytest.mark.parametrize("block", range(3))
def test_mutated_specs_keep_the_error_promise(tmp_path, block):
    rng = random.Random(1000 + block)
    seeds = seed_specs(SPECS)
    broken = []
    for _ in range(CASES // 3):
        outcome = fuzz_one(seeds, rng, tmp_path)
        if not outcome.kept_promise:
            broken.append(f"{outcome.command} after {outcome.mutation}: status {outcome.status}: "
                          f"{outcome.stderr.strip().splitlines()[-1:]}")
    assert not broken, "\n".join(broken[:10])


@pytest.mark.parametrize("kind", ["settings", "flags", "experiment"])
def test_mutated_settings_flags_and_experiments_keep_the_error_promise(tmp_path, kind):
    from tests.fuzzing import fuzz_experiment, fuzz_flags, fuzz_settings

    rng, seeds, broken = random.Random(2000), seed_specs(SPECS), []
    cases = {"settings": lambda: fuzz_settings(seeds, rng, tmp_path), "flags": lambda: fuzz_flags(rng, tmp_path),
             "experiment": lambda: fuzz_experiment(rng, tmp_path)}[kind]
    for _ in range(100):
        outcome = cases()
        if not outcome.kept_promise:
            broken.append(f"{outcome.mutation}: status {outcome.status}: {outcome.stderr.strip().splitlines()[-1:]}")
    assert not broken, "\n".join(broken[:10])
