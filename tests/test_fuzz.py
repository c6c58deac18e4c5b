"""Mutated specs, settings, flags and experiment files through the CLI and its loaders, corrupt
data and run folders through the commands that read them: every outcome is success or one
documented error line, within a per-case timeout."""

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


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A dataset (both layouts) and three trained runs that the file cases corrupt copies of."""
    from tests.fuzzing_files import fixtures_in

    tmp = tmp_path_factory.mktemp("fuzz-files")
    return fixtures_in(tmp), tmp


@pytest.mark.parametrize("kind, cases", [("data", 40), ("runs", 20)])
def test_corrupt_data_and_run_folders_keep_the_error_promise(folders, kind, cases):
    """Truncated/garbled/huge images and masks, bad splits and classes.json; garbled summaries,
    metrics, specs, checkpoints, per-image counts, locks — each through the commands reading them."""
    from tests.fuzzing_files import fuzz_data, fuzz_runs

    fixtures, tmp = folders
    rng, broken, outcomes = random.Random(3000), [], []
    for _ in range(cases):
        outcome = (fuzz_data if kind == "data" else fuzz_runs)(fixtures, rng, tmp)
        outcomes.append(outcome)
        if not outcome.kept_promise:
            broken.append(f"{outcome.command} after {outcome.mutation}: status {outcome.status}: "
                          f"{outcome.stderr.strip().splitlines()[-3:]}")
    assert not broken, "\n".join(broken[:10])
    assert len({o.command for o in outcomes}) >= 4  # several commands, not one
    assert any(o.status != 0 for o in outcomes)  # the corruptions reach what the commands read
