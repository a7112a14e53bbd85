"""Online mixing (issue 26): the ODM strategy's arithmetic, its place in a recipe's mixture, the rate schedule's O(1)
state, and what a run records of it. (Exact resume: tests/test_trainer.py and tests/test_distributed.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hf_ptjf.mixture import ODM, Mixture, RateSchedule, exploration_rate
from hf_ptjf.mixture.sampler import TemperatureMixtureSampler
from hf_ptjf.recipe import RecipeError, parse_recipe
from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

from .toy import collate, tiny_t5, toy_mixture


# ------------------------------------------------------------------ the strategy's arithmetic
def test_the_exploration_rate_decays_as_in_the_paper():
    assert exploration_rate(0, 4) == 0.25  # before any update: 1/K
    assert exploration_rate(1, 4) == 0.25  # sqrt(ln 4 / 4) = 0.59 > 1/K
    assert exploration_rate(100, 4) == pytest.approx(math.sqrt(math.log(4) / 400))
    assert exploration_rate(10_000, 2) == pytest.approx(math.sqrt(math.log(2) / 20_000))


def test_two_updates_by_hand():
    """Rewards are the moving average of loss / rate; the rates the EXP3 mix of softmax(eps_{t-1} R) and eps_t."""
    odm = ODM(alpha=0.5, floor=0.0)
    odm.start([0.5, 0.5])
    first = odm.update(np.array([2.0, 4.0]), np.array([0.5, 0.5]))
    assert odm.rewards.tolist() == [2.0, 4.0]  # 0.5 * 0 + 0.5 * (2 / 0.5), 0.5 * (4 / 0.5)
    assert first.tolist() == [0.5, 0.5]  # eps_1 = 1/2 for K = 2: all exploration
    second = odm.update(np.array([2.0, np.nan]), np.array([0.25, 0.75]))  # task 1 drew nothing: its reward stays
    assert odm.rewards.tolist() == [0.5 * 2.0 + 0.5 * 8.0, 4.0]
    eps_prev, eps = 0.5, math.sqrt(math.log(2) / 4)
    q0 = math.exp(eps_prev * 5.0) / (math.exp(eps_prev * 5.0) + math.exp(eps_prev * 4.0))
    want = [(1 - 2 * eps) * q0 + eps, (1 - 2 * eps) * (1 - q0) + eps]
    np.testing.assert_allclose(second, want, rtol=1e-12)
    assert second[0] > second[1]  # the task with the larger importance-weighted loss is sampled more


def test_initial_rates_are_the_prior_and_the_floor_bounds_every_rate():
    odm = ODM(floor=0.1)
    odm.start([0.99, 0.01])
    for _ in range(50):
        rates = odm.update(np.array([1.0, 1.0]), odm.rates)
    # equal losses: the importance weights favour the rarely drawn task, but the prior keeps the first task ahead
    # for a while; the floor keeps both at 0.1 or more, and the rates sum to 1
    assert rates.min() >= 0.1 - 1e-12 and rates.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="floor 0.6 is too large for 2 tasks"):
        ODM(floor=0.6).start([0.5, 0.5])


def test_the_state_continues_the_same_rates():
    losses = np.random.default_rng(0).uniform(1, 5, size=(20, 3))
    a = ODM(update_every=2)
    a.start([0.6, 0.3, 0.1])
    for row in losses[:10]:
        a.update(row, a.rates)
    b = ODM(update_every=2)
    b.start([0.6, 0.3, 0.1])
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for row in losses[10:]:
        np.testing.assert_array_equal(a.update(row, a.rates), b.update(row, b.rates))


@pytest.mark.parametrize("bad, message", [
    ({"update_every": 0}, "update_every must be an integer >= 1"),
    ({"update_every": True}, "update_every must be an integer >= 1"),
    ({"alpha": 1.0}, "alpha must be a number in \\[0, 1\\)"),
    ({"floor": -0.1}, "floor must be a number in \\[0, 1\\)"),
])
def test_bad_parameters_are_refused_naming_them(bad, message):
    with pytest.raises(ValueError, match=message):
        ODM(**bad)


# ------------------------------------------------------------------ in a recipe's mixture
def _recipe(mixture):
    return {"output_dir": "o", "tasks": [{"name": "a", "source": "bible", "src_versions": ["WEB"],
                                          "tgt_versions": ["Segond"]},
                                         {"name": "b", "source": "bible", "src_versions": ["WEB"],
                                          "tgt_versions": ["Cornilescu"]}],
            "stages": [{"name": "joint", "max_steps": 10, "mixture": mixture}]}


def test_a_recipe_mixture_builds_the_strategy_with_its_defaults_and_initial_rates():
    cfg = parse_recipe(_recipe({"strategy": "odm", "alpha": 0.8, "initial": {"strategy": "temperature", "tau": 2.0}}))
    mixture = cfg.stages[0].mixture
    assert mixture.online and (mixture.update_every, mixture.alpha, mixture.floor) == (1, 0.8, 0.01)
    odm = mixture.online_strategy()
    assert isinstance(odm, ODM) and (odm.update_every, odm.alpha, odm.floor) == (1, 0.8, 0.01)
    rates = cfg.stage_rates(cfg.stages[0], {"a": 10_000, "b": 100})
    want = Mixture(strategy="temperature", tau=2.0).rates({"a": 10_000, "b": 100})
    np.testing.assert_allclose(list(rates.values()), want)  # the first rates: the initial mixture's
    uniform = parse_recipe(_recipe({"strategy": "odm"}))
    assert uniform.stage_rates(uniform.stages[0], {"a": 10_000, "b": 100}) == {"a": 0.5, "b": 0.5}
    record = cfg.to_dict()["stages"][0]["mixture"]
    assert record["strategy"] == "odm" and record["alpha"] == 0.8 and record["initial"]["tau"] == 2.0
    assert "alpha" not in parse_recipe(_recipe({"tau": 2.0})).to_dict()["stages"][0]["mixture"]


@pytest.mark.parametrize("mixture, message", [
    ({"tau": 2.0, "alpha": 0.5}, r"stages.0.mixture`: `alpha`: used by online strategies only \(odm\)"),
    ({"strategy": "odm", "initial": {"strategy": "odm"}}, "`initial` must be a fixed-rate mixture"),
    ({"strategy": "odm", "initial": {"tasks": ["a"]}}, "`initial.tasks`"),
    ({"strategy": "odm", "floor": 0.7}, "floor 0.7 is too large for 2 tasks"),
    ({"strategy": "odm", "upate_every": 2}, "unknown key `stages.0.mixture.upate_every`. Did you mean `update_every`"),
])
def test_bad_online_mixtures_are_refused_before_any_work(mixture, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(_recipe(mixture))


# ------------------------------------------------------------------ the schedule stays small
def test_a_schedule_that_forgets_what_was_read_draws_what_the_whole_schedule_draws():
    rng = np.random.default_rng(0)
    whole = TemperatureMixtureSampler([700, 30, 5], 40_000, [0.6, 0.3, 0.1], seed=3)
    kept = TemperatureMixtureSampler([700, 30, 5], 40_000, [0.6, 0.3, 0.1], seed=3)
    kept.lookahead = 32
    it = iter(kept)
    got = []
    for step in range(1, 1001):  # an update every step of 32 positions, applied 3 steps later
        rates = rng.dirichlet([1, 1, 1])
        for s in (whole, kept):
            s.tasks.append((step + 3) * 32, rates)
        kept.tasks.forget_before(step * 32 - 32)
        got += [next(it) for _ in range(32)]
    assert len(kept.tasks.starts) <= 5  # a few segments, not 1,000
    assert got == whole.indices(0, 32_000).tolist()
    state = kept.state_dict(32_000)
    assert len(json.dumps(state)) < 1_000
    resumed = TemperatureMixtureSampler([700, 30, 5], 40_000, [0.6, 0.3, 0.1], seed=3)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert list(resumed)[:5_000] == whole.indices(32_000, 37_000).tolist()
    np.testing.assert_array_equal(resumed.task_counts(36_000), whole.task_counts(36_000))
    with pytest.raises(ValueError, match="before the schedule's oldest kept segment"):
        resumed.tasks.counts_before(0)


def test_a_one_segment_schedule_state_is_a_fixed_rate_checkpoint():
    sampler = TemperatureMixtureSampler([50, 5], 100, [0.9, 0.1])
    assert "schedule" not in sampler.state_dict()
    schedule = RateSchedule([0.9, 0.1])
    schedule.forget_before(10_000)  # nothing to forget: one segment
    assert not schedule.changed


# ------------------------------------------------------------------ the trainer
def _trainer(tmp_path, **kw):
    train, _ = toy_mixture()
    args = MixtureTrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8,
                                    logging_steps=2, report_to=[], use_cpu=True, disable_tqdm=True,
                                    dataloader_pin_memory=False, **kw)
    return train, args


def test_training_args_strategy_odm_mixes_online_even_without_the_per_task_loss_logs(tmp_path):
    train, args = _trainer(tmp_path, mixture_strategy="odm", log_task_train_loss=False)
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
    assert trainer.rates.tolist() == [0.5, 0.5]  # no initial mixture: uniform
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all("rate_hr" in h and "train_hr_loss" not in h for h in logs)
    assert trainer.online_mixer.strategy.t == 8  # an update every step
    assert len({h["rate_hr"] for h in logs}) > 1


def test_a_streamed_online_mixture_with_dataloader_workers_is_refused(tmp_path):
    train, args = _trainer(tmp_path, dataloader_num_workers=2, remove_unused_columns=False)
    stream = {"hr": train["hr"].to_iterable_dataset(num_shards=4), "lr": train["lr"].to_iterable_dataset(num_shards=2)}
    with pytest.raises(ValueError, match="needs `dataloader_num_workers: 0`"):
        MixtureTrainer(model=tiny_t5(), args=args, train_datasets=stream, data_collator=collate,
                       rates=[0.5, 0.5], online=ODM())


def test_rates_reach_only_positions_the_dataloader_has_not_read(tmp_path):
    """With DataLoader workers reading ahead (map-style), the delay covers what they prefetch: the rates that drew each
    step are the ones decided `delay` steps before it."""
    train, args = _trainer(tmp_path, dataloader_num_workers=2, dataloader_prefetch_factor=2)
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate,
                             rates=[0.5, 0.5], online=ODM(update_every=1))
    assert trainer.online_mixer.delay == 2 + 5  # 1 prefetched micro-batch + 2 workers x 2
    trainer.train()  # (raises if a rate change reached a position already read)
    schedule = trainer.mixture_data.schedule
    assert schedule.starts[-1] == (8 + trainer.online_mixer.delay) * 8
