import json

import numpy as np
import pytest

from hf_ptjf.mixture import temperature
from hf_ptjf.mixture.sampler import TemperatureMixtureSampler, feistel_permute

SIZES = [20_000, 700, 37]


def make(num_samples=50_000, seed=0, **kw):
    return TemperatureMixtureSampler(SIZES, num_samples, temperature=2.0, seed=seed, **kw)


def test_len_probabilities_and_weights_override():
    s = make()
    assert len(s) == 50_000
    np.testing.assert_allclose(s.probabilities, temperature(SIZES, 2.0))
    w = TemperatureMixtureSampler(SIZES, 10, [1, 1, 2], temperature=2.0)
    np.testing.assert_allclose(w.probabilities, [0.25, 0.25, 0.5])


def test_distribution_over_1e6_draws_within_tolerance():
    s = TemperatureMixtureSampler(SIZES, 1_000_000, temperature=3.33, seed=123)
    counts = np.bincount(s.task_of(s.indices(0, 1_000_000)), minlength=3)
    expected = s.probabilities * 1_000_000
    sigma = np.sqrt(1_000_000 * s.probabilities * (1 - s.probabilities))
    assert np.all(np.abs(counts - expected) < 5 * sigma), (counts, expected)
    # and it really is random: a different seed gives different counts
    other = TemperatureMixtureSampler(SIZES, 1_000_000, temperature=3.33, seed=124)
    assert not np.array_equal(counts, np.bincount(other.task_of(other.indices(0, 1_000_000)), minlength=3))


def test_each_pass_is_a_permutation_of_the_task():
    s = make(num_samples=200_000)
    idx = s.indices(0, 200_000)
    for k, size in enumerate(SIZES):
        seq = idx[s.task_of(idx) == k] - s.offsets[k]
        full_passes = len(seq) // size
        assert full_passes >= 1 or k == 0
        for p in range(full_passes):
            assert np.array_equal(np.sort(seq[p * size : (p + 1) * size]), np.arange(size)), (k, p)
        # passes are shuffled differently
        if full_passes >= 2:
            assert not np.array_equal(seq[:size], seq[size : 2 * size])


def test_deterministic_and_seed_dependent():
    a, b, c = list(make(seed=5)), list(make(seed=5)), list(make(seed=6))
    assert a == b and a != c


def test_iteration_equals_vectorised_ranges_in_any_split():
    s = make()
    stream = np.array(list(s))
    assert np.array_equal(stream, s.indices(0, 50_000))
    cuts = [0, 1, 4095, 4096, 4097, 12_345, 50_000]
    parts = np.concatenate([s.indices(a, b) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(parts, stream)


def test_epochs_continue_one_stream():
    s = make(num_samples=5_000)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert np.array_equal(np.array(first + second), s.indices(0, 10_000))


@pytest.mark.parametrize("position", [0, 1, 4095, 4096, 9_999, 31_337, 49_999, 50_000])
def test_resume_yields_exactly_the_remaining_stream(position):
    full = list(make())
    s = make()
    it = iter(s)
    for _ in range(position):
        next(it)
    state = s.state_dict()
    assert state["position"] == position
    resumed = make()
    resumed.load_state_dict(state)
    assert list(resumed) == full[position:]


def test_resume_far_into_the_stream_matches_vectorised_reference():
    n = 3 * 10**9  # beyond one era of the counts tree (2**29 positions)
    s = TemperatureMixtureSampler(SIZES, n, temperature=2.0, seed=9)
    s.load_state_dict({**s.state_dict(), "position": n - 100})
    tail = list(s)
    assert len(tail) == 100
    assert np.array_equal(tail, s.indices(n - 100, n))
    # prefix counts far out are exact: consistent with the counts just before
    before, after = s.task_counts(n - 100), s.task_counts(n)
    assert np.array_equal(after - before, np.bincount(s.task_of(np.array(tail)), minlength=3))
    assert after.sum() == n


@pytest.mark.parametrize("position", [0, 1, 777, 4096, 4097, 123_456])
def test_task_counts_of_any_prefix(position):
    s = make(num_samples=130_000)
    idx = s.indices(0, position)
    assert np.array_equal(s.task_counts(position), np.bincount(s.task_of(idx), minlength=3) if position else [0, 0, 0])


def test_task_of_maps_contiguous_blocks():
    s = make()
    assert s.task_of(0) == 0 and s.task_of(19_999) == 0 and s.task_of(20_000) == 1 and s.task_of(20_736) == 2
    with pytest.raises(ValueError):
        s.task_of(sum(SIZES))


def test_refuses_to_resume_a_different_mixture():
    state = make().state_dict()
    with pytest.raises(ValueError, match="task_sizes"):
        TemperatureMixtureSampler([5, 5], 10).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        make(seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="rates"):
        TemperatureMixtureSampler(SIZES, 50_000, temperature=1.0).load_state_dict(state)


@pytest.mark.parametrize("domain", [1, 2, 3, 5, 64, 100, 4097, 100_003])
def test_feistel_is_a_bijection(domain):
    keys = np.random.SeedSequence(domain).generate_state(4, np.uint64)
    out = feistel_permute(np.arange(domain), domain, keys)
    assert np.array_equal(np.sort(out), np.arange(domain))
    if domain > 5:
        assert not np.array_equal(out, np.arange(domain))


def test_bad_arguments():
    with pytest.raises(ValueError, match="task_sizes"):
        TemperatureMixtureSampler([10, 0], 5)
    with pytest.raises(ValueError, match="num_samples"):
        TemperatureMixtureSampler([10], 0)
    with pytest.raises(ValueError, match="tau"):
        TemperatureMixtureSampler([10, 5], 5, temperature=0)


def test_feistel_beyond_32_bits_stays_in_domain_and_injective():
    domain = 3 * 2**33 + 7  # uses the uint64 path
    keys = np.random.SeedSequence(0).generate_state(4, np.uint64)
    x = np.arange(0, domain, domain // 20_000, dtype=np.int64)
    out = feistel_permute(x, domain, keys)
    assert out.min() >= 0 and out.max() < domain and len(np.unique(out)) == len(x)


# ------------------------------------------------------------------ rate schedules (rates that change in a stage)
def test_a_one_segment_schedule_is_the_task_sequence_bit_for_bit():
    from hf_ptjf.mixture.schedule import RateSchedule
    from hf_ptjf.mixture.sequence import BLOCK, TaskSequence

    rates = [0.7, 0.2, 0.1]
    plain, schedule = TaskSequence(rates, seed=3), RateSchedule(rates, seed=3)
    for start, stop in ((0, 10), (5, BLOCK + 7), (3 * BLOCK - 1, 5 * BLOCK + 2), (40 * BLOCK, 40 * BLOCK + 1)):
        assert np.array_equal(schedule.labels(start, stop), plain.labels(start, stop)), (start, stop)
    for position in (0, 1, BLOCK, 7 * BLOCK + 13, 10**7 + 5):
        block, within = divmod(position, BLOCK)
        want = plain.counts_before_block(block) + np.bincount(plain.block_labels(block, block + 1)[:within],
                                                              minlength=3)
        assert np.array_equal(schedule.counts_before(position), want), position


def test_a_schedule_switches_rates_at_its_segments_and_counts_exactly():
    from hf_ptjf.mixture.schedule import RateSchedule

    schedule = RateSchedule([0.9, 0.1], seed=0)
    schedule.append(5000, [0.1, 0.9])
    schedule.append(30000, [0.5, 0.5])
    with pytest.raises(ValueError, match="after the last one"):
        schedule.append(30000, [0.5, 0.5])
    labels = schedule.labels(0, 60000)
    assert np.array_equal(labels[:5000], RateSchedule([0.9, 0.1], seed=0).labels(0, 5000))  # before: unchanged
    assert abs(labels[5000:30000].mean() - 0.9) < 0.02 and abs(labels[30000:].mean() - 0.5) < 0.02  # ~7 sigma
    assert np.array_equal(schedule.labels(4990, 30010), labels[4990:30010])  # ranges across segment edges
    for position in (0, 4999, 5000, 5001, 17777, 30000, 45678):
        assert np.array_equal(schedule.counts_before(position), np.bincount(labels[:position], minlength=2))
    assert schedule.rates_at(4999).tolist() == [0.9, 0.1] and schedule.rates_at(5000).tolist() == [0.1, 0.9]


def test_a_sampler_with_changed_rates_resumes_exactly_and_old_checkpoints_still_load():
    sampler = TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1)
    fixed_state = sampler.state_dict()
    assert "schedule" not in fixed_state  # fixed rates: checkpoints as before
    sampler.tasks.append(1000, [0.3, 0.7])
    full = list(sampler)
    assert np.mean([sampler.task_of(i) for i in full[1000:]]) > 0.6  # the new rates hold from position 1000
    assert sampler.task_counts(3000).tolist() == np.bincount([sampler.task_of(i) for i in full], minlength=2).tolist()
    cut = TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1)
    cut.tasks.append(1000, [0.3, 0.7])
    it = iter(cut)
    for _ in range(1700):
        next(it)
    state = cut.state_dict()
    # the schedule from the segment of the position on, with the counts before it: a few numbers however long the run
    first = TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1).task_counts(1000).tolist()
    assert state["schedule"] == {"initial": [0.8, 0.2], "first_index": 1, "counts": first,
                                 "segments": [[1000, [0.3, 0.7]]]}
    resumed = TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert list(resumed) == full[1700:]
    old = TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1)
    old.load_state_dict({**fixed_state, "position": 40})  # a checkpoint of the current release
    assert list(old) == list(TemperatureMixtureSampler([500, 50], 3000, [0.8, 0.2], seed=1))[40:]
