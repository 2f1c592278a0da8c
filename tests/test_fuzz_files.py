"""The mutation fuzz of Keras model files (``tests/fuzz_files.py``, issue #23) in the default
run: the first ``COUNT`` mutants of each seed in ``tests/fixtures/fuzz/`` go through
``convc build`` (and one in four through ``convc import``) in this process, and every outcome
must be a correct build or a located refusal within the time limit; a sample also runs as a
command of its own, where its time and peak memory are measured.

``python tests/fuzz_files.py`` runs 1,000 mutants of each seed (docs/development.md).
"""

from __future__ import annotations

import collections
import shutil

import pytest
from fuzz_files import FAILURES, Fuzz, load_seeds, mutant, summarize
from hostile_files import MEMORY_LIMIT, TIME_LIMIT, run_convc

COUNT = 30
"""Mutants of each seed in the default run (ten seeds)."""

SAMPLE = 10
"""Of those, how many also run as a command of their own, spread over seeds and mutations."""


@pytest.fixture(scope="module")
def seeds():
    return load_seeds()


@pytest.fixture(scope="module")
def fuzzed(seeds, tmp_path_factory):
    """Each mutant's outcome in this process; the mutants of the sample kept on disk."""
    folder = tmp_path_factory.mktemp("fuzz")
    runner = Fuzz(seeds, folder)
    chosen = {(seeds[i % len(seeds)].name, (7 * i + 3) % COUNT) for i in range(SAMPLE)}
    outcomes, sample = [], []
    try:
        for seed in seeds:
            for number in range(COUNT):
                outcome = runner.run(seed, number)
                outcomes.append(outcome)
                if (seed.name, number) in chosen:
                    assert runner.last_path is not None
                    kept = folder / f"sample{len(sample)}{runner.last_path.suffix}"
                    shutil.copy(runner.last_path, kept)
                    sample.append((outcome, kept))
    finally:
        runner.close()
    return outcomes, sample


def test_every_mutant_builds_correctly_or_is_refused_with_its_location(fuzzed):
    outcomes, _ = fuzzed
    print("\n" + summarize(outcomes))
    failures = [outcome for outcome in outcomes if outcome.kind in FAILURES]
    assert not failures, "\n".join(
        f"{o.seed} #{o.number} {o.kind}: {o.mutation}\n    {o.detail}" for o in failures
    )


def test_the_fuzz_reaches_builds_changed_builds_and_refusals(fuzzed, seeds):
    """A fuzz that only ever refuses (or never changes a build) tests little: each seed sees
    both, and some mutants build a model other than the seed's."""
    outcomes, _ = fuzzed
    by_seed = collections.defaultdict(collections.Counter)
    for outcome in outcomes:
        by_seed[outcome.seed][outcome.kind] += 1
    for seed in seeds:
        counts = by_seed[seed.name]
        assert counts["built-identical"] >= 3 and counts["refused"] >= 5, (seed.name, counts)
    assert sum(counts["built-different"] for counts in by_seed.values()) >= 5, by_seed


def test_a_sample_of_mutants_as_commands_of_their_own(fuzzed):
    """The in-process outcome is the command's, within the time and memory limits."""
    _, sample = fuzzed
    assert len(sample) == SAMPLE
    for outcome, path in sample:
        ran = run_convc(["build", str(path), "-o", str(path.with_suffix(".onnx"))], path.parent)
        where = f"{outcome.seed} #{outcome.number} ({outcome.mutation})"
        assert ran.code == (0 if outcome.kind.startswith("built") else 1), (where, ran.err[-300:])
        assert "Traceback" not in ran.err, where
        assert ran.seconds < TIME_LIMIT, (where, ran.seconds)
        assert ran.memory < MEMORY_LIMIT, (where, ran.memory >> 20)


def test_mutants_are_the_same_on_every_run(seeds):
    """Mutant N of a seed depends on nothing but the seed and N."""
    for seed in seeds:
        for number in (0, 7):
            assert mutant(seed, number, seeds) == mutant(seed, number, seeds)
