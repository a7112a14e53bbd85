import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_ptjf.mixture import ODM
from hf_ptjf.train import MIXTURE_STATE_NAME, MixtureTrainer, MixtureTrainingArguments

from .toy import collate, tiny_t5, toy_mixture


def make_trainer(out, max_steps=12, bs=8, ga=1, save_steps=500, **kw):
    train, evals = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=bs, gradient_accumulation_steps=ga,
        learning_rate=5e-3, warmup_steps=2, lr_scheduler_type="cosine", logging_steps=1, save_steps=save_steps,
        eval_strategy="steps", eval_steps=6, per_device_eval_batch_size=16, report_to=[], use_cpu=True,
        mixture_strategy="temperature", mixture_tau=3.0, seed=7, disable_tqdm=True, **kw,
    )
    return MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, eval_dataset=evals, data_collator=collate)


def train_logs(trainer):
    return [h for h in trainer.state.log_history if "loss" in h]


def test_counts_equal_the_sampler_and_per_task_eval(tmp_path):
    t = make_trainer(tmp_path, max_steps=12)
    t.train()
    last = train_logs(t)[-1]
    expected = t.mixture_sampler.task_counts(12 * 8)
    assert [last["examples_seen_hr"], last["examples_seen_lr"]] == expected.tolist()
    assert expected[1] > 0  # the small task is really sampled
    # target tokens are counted from the labels actually consumed
    idx = t.mixture_sampler.indices(0, 12 * 8)
    lengths = np.array([len(t.train_dataset[int(i)]["labels"]) for i in idx])
    tasks = t.mixture_sampler.task_of(idx)
    assert last["target_tokens_seen_lr"] == lengths[tasks == 1].sum()
    evals = {k for h in t.state.log_history for k in h if k.startswith("eval_") and k.endswith("_loss")}
    assert evals == {"eval_hr_loss", "eval_lr_loss"}


def _with_characters(ds, per_token):
    """Rows carrying a ``characters`` count (as tokenize_tasks writes it): here ``per_token`` x their input length."""
    return ds.add_column("characters", [per_token * len(x) for x in ds["input_ids"]])


@pytest.mark.parametrize("carried", [("hr", "lr"), ("lr",)])
def test_characters_seen_are_the_consumed_rows_characters_and_survive_a_resume(tmp_path, carried):
    train, evals = toy_mixture()
    train = {k: _with_characters(ds, 5 if k == "hr" else 3) if k in carried else ds for k, ds in train.items()}

    def trainer(out, max_steps):
        args = MixtureTrainingArguments(
            output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=5e-3,
            logging_steps=1, save_steps=5, report_to=[], use_cpu=True, mixture_strategy="temperature",
            mixture_tau=3.0, seed=7, disable_tqdm=True)
        return MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)

    full = trainer(tmp_path / "full", 12)
    full.train()
    idx = full.mixture_sampler.indices(0, 12 * 8)
    chars = np.array([full.train_dataset[int(i)]["characters"] or 0 for i in idx])
    tasks = full.mixture_sampler.task_of(idx)
    last = train_logs(full)[-1]
    for k, name in enumerate(("hr", "lr")):
        if name in carried:
            assert last[f"characters_seen_{name}"] == chars[tasks == k].sum() > 0
        else:  # rows without a count: the task's characters are unknown, not 0
            assert f"characters_seen_{name}" not in last and "characters" not in full.seen_counts()[name]
    state = json.loads((tmp_path / "full" / "checkpoint-5" / MIXTURE_STATE_NAME).read_text())
    assert {n for n in ("hr", "lr") if "characters" in state["seen"][n]} == set(carried)
    resumed = trainer(tmp_path / "full", 12)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-5"))
    assert resumed.seen_counts() == full.seen_counts()


def test_rates_follow_the_strategy_or_explicit_rates(tmp_path):
    t = make_trainer(tmp_path)
    sizes = np.array([3000, 40]) / 3040
    np.testing.assert_allclose(t.rates, sizes ** (1 / 3) / (sizes ** (1 / 3)).sum())
    train, evals = toy_mixture()
    t2 = MixtureTrainer(model=tiny_t5(), args=t.args, train_datasets=train, eval_dataset=evals, rates={"hr": 0.7, "lr": 0.3},
                        data_collator=collate)
    np.testing.assert_allclose(t2.rates, [0.7, 0.3])
    with pytest.raises(ValueError, match="unknown task"):
        MixtureTrainer(model=tiny_t5(), args=t.args, train_datasets=train, eval_dataset=evals, rates={"xx": 1.0},
                       data_collator=collate)


def test_resumed_training_reproduces_the_uninterrupted_run(tmp_path):
    full = make_trainer(tmp_path / "full", max_steps=12, save_steps=5)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-5"
    state = json.loads((ckpt / MIXTURE_STATE_NAME).read_text())
    assert state["sampler"]["position"] == 5 * 8
    assert [state["seen"][n]["examples"] for n in ("hr", "lr")] == full.mixture_sampler.task_counts(40).tolist()

    resumed = make_trainer(tmp_path / "resumed", max_steps=12, save_steps=5)
    resumed.train(resume_from_checkpoint=str(ckpt))
    a = {h["step"]: h for h in train_logs(full)}
    b = {h["step"]: h for h in train_logs(resumed) if h["step"] > 5}  # 1-5 come from the checkpoint
    assert sorted(b) == list(range(6, 13))
    for step in b:
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-5), step
        for key in ("examples_seen_hr", "examples_seen_lr", "target_tokens_seen_hr", "target_tokens_seen_lr"):
            assert b[step][key] == a[step][key], (step, key)
    wa = load_file(tmp_path / "full" / "checkpoint-12" / "model.safetensors")
    wb = load_file(tmp_path / "resumed" / "checkpoint-12" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_resume_refuses_different_tasks(tmp_path):
    t = make_trainer(tmp_path / "a", max_steps=4, save_steps=4)
    t.train()
    train, evals = toy_mixture()
    other = MixtureTrainer(model=tiny_t5(), args=t.args, train_datasets={"lr": train["lr"], "hr": train["hr"]},
                           eval_dataset=evals, data_collator=collate)
    with pytest.raises(ValueError, match="tasks"):
        other.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-4"))


def test_gradient_accumulation_does_not_rescale_the_loss(tmp_path):
    # Same 8 examples per optimizer step, as 1x8 or 2x4 micro-batches: the logged loss must agree
    # (transformers 5.x would otherwise double it for T5 under accumulation).
    one = make_trainer(tmp_path / "one", max_steps=1, bs=8, ga=1)
    one.train()
    two = make_trainer(tmp_path / "two", max_steps=1, bs=4, ga=2)
    two.train()
    assert two.mixture_sampler.indices(0, 8).tolist() == one.mixture_sampler.indices(0, 8).tolist()
    l1, l2 = train_logs(one)[0]["loss"], train_logs(two)[0]["loss"]
    assert l2 == pytest.approx(l1, rel=0.1)
    assert not one.model_accepts_loss_kwargs


def test_empty_task_is_rejected(tmp_path):
    train, _ = toy_mixture()
    args = MixtureTrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="empty"):
        MixtureTrainer(model=tiny_t5(), args=args, train_datasets={"a": train["hr"], "b": train["lr"].select([])})


def test_unknown_strategy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="mixture_strategy"):
        MixtureTrainingArguments(output_dir=str(tmp_path), mixture_strategy="softmax")


def test_label_smoothing_without_decoder_inputs_from_the_collator(tmp_path):
    # the Trainer pops `labels` for its label smoother; the decoder inputs must still reach the model
    t = make_trainer(tmp_path, max_steps=2, label_smoothing_factor=0.1)
    t.train()
    assert train_logs(t)[-1]["loss"] > 0


def test_eval_loss_is_plain_cross_entropy_without_label_smoothing_in_eval(tmp_path):
    smoothed = make_trainer(tmp_path / "a", max_steps=2, label_smoothing_factor=0.1)
    plain = make_trainer(tmp_path / "b", max_steps=2, label_smoothing_factor=0.1, label_smoothing_in_eval=False)
    ds = smoothed.eval_dataset["lr"]  # both models are tiny_t5(seed=0), untrained: the same weights
    bs = plain.args.per_device_eval_batch_size  # the eval loop averages per-batch token means
    ce, ls = [], []
    for start in range(0, len(ds), bs):
        batch = collate([ds[i] for i in range(start, min(start + bs, len(ds)))])
        with torch.no_grad():
            logp = plain.model.eval()(**batch).logits.log_softmax(-1).flatten(0, 1)
        labels = batch["labels"].flatten()
        keep = labels != -100
        nll = -logp[keep].gather(1, labels[keep, None]).mean()
        ce.append(nll.item())
        ls.append((0.9 * nll - 0.1 * logp[keep].mean()).item())  # transformers' LabelSmoother, eps 0.1
    kw = dict(eval_dataset=ds, metric_key_prefix="eval_lr")
    assert plain.evaluate(**kw)["eval_lr_loss"] == pytest.approx(float(np.mean(ce)), rel=1e-5)
    assert smoothed.evaluate(**kw)["eval_lr_loss"] == pytest.approx(float(np.mean(ls)), rel=1e-5)
    assert abs(np.mean(ls) - np.mean(ce)) > 1e-4  # the two really differ on this model
    assert plain.label_smoother is not None  # training still smooths


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_per_task_training_loss_is_the_training_loss_split_by_task(tmp_path, smoothing):
    """train_<task>_loss over a logging window, weighted by the task's target tokens, is the logged loss; the
    training itself is unchanged by logging it."""
    t = make_trainer(tmp_path / "on", max_steps=8, label_smoothing_factor=smoothing)
    t.train()
    logs = train_logs(t)
    assert all("train_hr_loss" in h for h in logs) and any("train_lr_loss" in h for h in logs)
    previous: dict = {}
    for h in logs:  # logging_steps=1, no accumulation: one batch per window
        tokens = {k: h[f"target_tokens_seen_{k}"] - previous.get(f"target_tokens_seen_{k}", 0) for k in ("hr", "lr")}
        previous = h
        assert ("train_lr_loss" in h) == (tokens["lr"] > 0)
        mixed = sum(h[f"train_{k}_loss"] * n for k, n in tokens.items() if n) / sum(tokens.values())
        assert mixed == pytest.approx(h["loss"], abs=2e-3), h
    off = make_trainer(tmp_path / "off", max_steps=8, label_smoothing_factor=smoothing, log_task_train_loss=False)
    off.train()
    assert [h["loss"] for h in train_logs(off)] == [h["loss"] for h in logs]
    assert not any("train_hr_loss" in h for h in train_logs(off))


class _StopAt:
    """A callback that ends training after ``step`` optimizer steps (a crash right after that checkpoint)."""

    def __new__(cls, step):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                control.should_training_stop = state.global_step >= step

        return Stop()


@pytest.mark.parametrize("mixing", ["fixed", "odm"])
@pytest.mark.parametrize("data", ["map", "stream"])
def test_resume_with_dropout_continues_exactly(tmp_path, data, mixing):
    """With dropout the resumed run must draw the same masks: the global RNG after the restore is the checkpoint's
    (a new DataLoader iterator must not draw its seed from it). Dropout 0.0 would hide the fault. With an online
    mixture (ODM, rates updated every 2 steps) the rates decided after the checkpoint must be the same too: its state
    and the schedule are in the checkpoint."""
    def run(out, stop=None, resume=None):
        train, evals = toy_mixture()
        if data == "stream":
            train = {"hr": train["hr"].to_iterable_dataset(num_shards=4), "lr": train["lr"].to_iterable_dataset()}
        args = MixtureTrainingArguments(
            output_dir=str(out), max_steps=12, per_device_train_batch_size=8, learning_rate=5e-3, warmup_steps=2,
            logging_steps=1, save_steps=6, report_to=[], use_cpu=True, seed=7, disable_tqdm=True,
            dataloader_pin_memory=False, remove_unused_columns=data == "map")
        trainer = MixtureTrainer(model=tiny_t5(dropout=0.3), args=args, train_datasets=train, data_collator=collate,
                                 rates={"hr": 0.7, "lr": 0.3}, online=ODM(update_every=2) if mixing == "odm" else None)
        if stop:
            trainer.add_callback(_StopAt(stop))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop=6)
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-6"))
    keys = ("loss", "rate_hr", "rate_lr", "examples_seen_lr")
    a = {h["step"]: [h.get(k) for k in keys] for h in train_logs(full)}
    b = {h["step"]: [h.get(k) for k in keys] for h in train_logs(resumed) if h["step"] > 6}
    assert sorted(b) == list(range(7, 13))
    assert [b[s] for s in b] == [a[s] for s in b]  # bit for bit
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    if mixing == "odm":  # the rates did change, after the checkpoint too (else the test would prove little)
        rates = [a[s][1] for s in sorted(a)]
        assert rates[0] == 0.7 and len(set(rates[6:])) > 1, rates


def test_resuming_a_tied_model_does_not_report_its_tied_weights_missing(tmp_path):
    """T5 ties its embeddings and head: the checkpoint stores the shared tensor once, and a resume must not log
    "There were missing keys in the checkpoint model loaded" for the tied copies (a user reads it as a broken
    checkpoint); a key that is really missing is still reported."""
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    keep = Keep()
    logger = logging.getLogger("transformers.trainer")
    logger.addHandler(keep)
    level = logger.level
    logger.setLevel(logging.WARNING)  # the suite runs with TRANSFORMERS_VERBOSITY=error
    try:
        make_trainer(tmp_path / "a", max_steps=4, save_steps=2).train()
        ckpt = tmp_path / "a" / "checkpoint-2"
        assert tiny_t5().config.tie_word_embeddings
        make_trainer(tmp_path / "b", max_steps=4).train(resume_from_checkpoint=str(ckpt))
        assert not [m for m in keep.messages if "missing keys" in m], keep.messages
        weights = load_file(ckpt / "model.safetensors")
        from safetensors.torch import save_file

        save_file({k: v for k, v in weights.items() if not k.startswith("decoder.final_layer_norm")},
                  ckpt / "model.safetensors", metadata={"format": "pt"})
        make_trainer(tmp_path / "c", max_steps=4).train(resume_from_checkpoint=str(ckpt))
        missing = [m for m in keep.messages if "missing keys" in m]
        assert len(missing) == 1 and "decoder.final_layer_norm.weight" in missing[0] and "lm_head" not in missing[0]
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
