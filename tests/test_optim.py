"""hf_ptjf.optim: Adafactor against hand computation and transformers' Adafactor, the rsqrt LR schedules, and
their wiring into MixtureTrainer / recipes (optimizer: adafactor, optimizer_args, lr_scheduler, first/second_stage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from hf_ptjf.optim import Adafactor, constant_then_rsqrt, get_lr_schedule, warmup_then_rsqrt


def _step(opt: torch.optim.Optimizer, p: torch.Tensor, grad: list | np.ndarray) -> None:
    p.grad = torch.tensor(np.asarray(grad), dtype=p.dtype)
    opt.step()


def test_unfactored_momentum_steps_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64))
    opt = Adafactor([p], lr=0.1, beta1=0.9, factored=False, clipping_threshold=1.0)
    # step 1: beta2 = 1 - 1**-0.8 = 0, so v = g^2 and u = sign(g) (0 where g = 0); rms(u) = sqrt(3/4) < 1: no clip;
    # m = 0.9 * 0 + 0.1 * (lr * u) = 0.01 * u
    g1 = [0.1, -0.2, 0.3, 0.0]
    _step(opt, p, g1)
    assert p.detach().numpy() == pytest.approx([0.99, -1.99, 2.99, 0.5], abs=1e-12)
    # step 2, the formulas spelled out: beta2 = 1 - 2**-0.8, clipping active (threshold 0.5)
    opt.param_groups[0]["clipping_threshold"] = 0.5
    g2 = np.array([0.2, 0.2, 0.3, 0.4])
    beta2 = 1 - 2**-0.8
    v = beta2 * (np.square(g1) + 1e-30) + (1 - beta2) * (g2**2 + 1e-30)
    u = g2 / np.sqrt(v)
    u /= max(1.0, np.sqrt(np.mean(u**2)) / 0.5)
    m = 0.9 * (0.01 * np.sign(g1)) + 0.1 * (0.1 * u)
    expected = np.array([0.99, -1.99, 2.99, 0.5]) - m
    _step(opt, p, g2)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12)
    assert set(opt.state[p]) == {"step", "v", "m"} and opt.state[p]["step"] == 2


def test_factored_step_by_hand_and_unfactored_option():
    p = torch.nn.Parameter(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64))
    g = np.array([[0.1, -0.2, 0.4], [0.3, 0.05, -0.1]])
    opt = Adafactor([p], lr=0.05, min_dim_size_to_factor=2, clipping_threshold=None)
    _step(opt, p, g)
    g2 = g**2 + 1e-30
    v_row, v_col = g2.mean(axis=1), g2.mean(axis=0)  # beta2 = 0 at step 1
    v_hat = np.outer(v_row / v_row.mean(), v_col)
    expected = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]) - 0.05 * g / np.sqrt(v_hat)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12)
    assert opt.state[p]["v_row"].shape == (2,) and opt.state[p]["v_col"].shape == (3,)
    # factored=False keeps the full second moment; small matrices are not factored either (T5X threshold 128)
    big = torch.nn.Parameter(torch.zeros(128, 256))
    small = torch.nn.Parameter(torch.zeros(16, 256))
    for factored, want in ((True, {"v_row", "v_col"}), (False, {"v"})):
        opt = Adafactor([big, small], lr=0.01, factored=factored)
        big.grad, small.grad = torch.randn(128, 256), torch.randn(16, 256)
        opt.step()
        assert set(opt.state[big]) - {"step"} == want
        assert set(opt.state[small]) - {"step"} == {"v"}


def test_segments_of_a_flat_partition_step_like_separate_weights():
    torch.manual_seed(0)
    a, b = torch.randn(3, 4, dtype=torch.float64), 0.01 * torch.randn(5, dtype=torch.float64)
    separate = [torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())]
    flat = torch.nn.Parameter(torch.cat([a.flatten(), b]))
    plain = torch.nn.Parameter(flat.detach().clone())
    kw = dict(lr=0.1, beta1=0.9, factored=False, multiply_by_parameter_scale=True, clipping_threshold=0.5)
    opt_sep, opt_flat, opt_plain = Adafactor(separate, **kw), Adafactor([flat], **kw), Adafactor([plain], **kw)
    opt_flat.set_segments(flat, [12, 5])
    for _ in range(3):
        g = torch.randn(17, dtype=torch.float64)
        separate[0].grad, separate[1].grad = g[:12].reshape(3, 4).clone(), g[12:].clone()
        flat.grad, plain.grad = g.clone(), g.clone()
        for opt in (opt_sep, opt_flat, opt_plain):
            opt.step()
    want = torch.cat([separate[0].detach().flatten(), separate[1].detach()])
    torch.testing.assert_close(flat.detach(), want, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(plain.detach(), want)  # one RMS over both weights is another optimizer
    with pytest.raises(ValueError, match="tile"):
        opt_flat.set_segments(flat, [12, 4])


@pytest.mark.parametrize("shape", [(6, 5), (7,)])
def test_matches_transformers_adafactor(shape):
    from transformers.optimization import Adafactor as HFAdafactor

    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(*shape, dtype=torch.float64))
    theirs = torch.nn.Parameter(ours.detach().clone())
    opt = Adafactor([ours], lr=0.03, beta1=0.9, min_dim_size_to_factor=1, weight_decay=0.1)
    ref = HFAdafactor([theirs], lr=0.03, beta1=0.9, scale_parameter=False, relative_step=False, warmup_init=False,
                      weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(*shape, dtype=torch.float64)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_reduces_a_quadratic_and_keeps_bf16_params_with_fp32_state():
    torch.manual_seed(0)
    a = torch.randn(32, 16)
    target = torch.randn(16)
    x = torch.nn.Parameter(torch.zeros(16))
    opt = Adafactor([x], lr=0.1, beta1=0.9, factored=False)
    sched = LambdaLR(opt, warmup_then_rsqrt(10))

    def loss() -> torch.Tensor:
        return (a @ (x - target)).square().mean()

    start = loss().item()
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
        sched.step()
    assert loss().item() < 1e-3 * start
    w = torch.nn.Parameter(torch.ones(4, 4, dtype=torch.bfloat16))
    opt = Adafactor([w], lr=1.0, beta1=0.9)  # an update of 0.1: visible in bf16
    w.grad = torch.ones(4, 4, dtype=torch.bfloat16)
    opt.step()
    assert w.dtype == torch.bfloat16 and opt.state[w]["m"].dtype == torch.float32 and (w < 1).all()


def test_invalid_arguments():
    p = [torch.nn.Parameter(torch.zeros(2))]
    for bad in ({"beta1": 1.0}, {"decay_rate": 0.0}, {"clipping_threshold": 0}, {"lr": -1.0}):
        with pytest.raises(ValueError):
            Adafactor(p, **bad)
    for factory in (constant_then_rsqrt, warmup_then_rsqrt):
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="positive integer"):
                factory(bad)


def test_schedules():
    f = constant_then_rsqrt(100)
    assert [f(s) for s in (0, 1, 50, 100)] == [1.0, 1.0, 1.0, 1.0]
    assert f(400) == pytest.approx(0.5) and f(10_000) == pytest.approx(0.1)
    # T5's 1/sqrt(max(step, 10k)) is 0.01 * constant_then_rsqrt(10k)
    t5 = constant_then_rsqrt(10_000)
    assert [0.01 * t5(s) for s in (5, 40_000)] == pytest.approx([1 / math.sqrt(10_000), 1 / math.sqrt(40_000)])
    w = warmup_then_rsqrt(4)
    assert [w(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, math.sqrt(4 / 5)])
    assert w(16) == pytest.approx(0.5)
    # as a LambdaLR: the LR of the k-th update is base * f(k - 1); the pivot survives a state-dict round trip
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = get_lr_schedule("warmup_then_rsqrt", opt, 4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01 * w(s) for s in range(6)])
    other = get_lr_schedule("warmup_then_rsqrt", torch.optim.SGD([p], lr=0.01), 99)
    other.load_state_dict(sched.state_dict())
    assert other.lr_lambdas[0].warmup_steps == 4 and other.last_epoch == 6
    with pytest.raises(ValueError, match="unknown LR schedule"):
        get_lr_schedule("cosine", opt, 4)


def test_trainer_uses_adafactor_and_the_schedule(tmp_path):
    from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

    from .toy import collate, tiny_t5, toy_mixture

    train, _ = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8, learning_rate=0.01, logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=7,
        optim="adafactor", optimizer_args={"beta1": 0.9, "factored": False}, lr_scheduler_type="constant_then_rsqrt",
        lr_schedule_steps=3,
    )
    assert (args.lr_scheduler_type, args.hf_ptjf_lr_schedule) == ("constant_then_rsqrt", "constant_then_rsqrt")
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
    trainer.train()
    inner = trainer.optimizer.optimizer  # accelerate's AcceleratedOptimizer wraps ours
    assert isinstance(inner, Adafactor)
    assert inner.defaults["beta1"] == 0.9 and inner.defaults["factored"] is False
    logs = [h for h in trainer.state.log_history if "loss" in h]
    # the LR logged at step k is the one update k used: base * f(k - 1), constant for 3 updates then rsqrt
    assert [h["learning_rate"] for h in logs] == pytest.approx([0.01 * min(1, math.sqrt(3 / max(s, 1))) for s in range(8)])
    assert logs[-1]["loss"] < logs[0]["loss"]
    with pytest.raises(ValueError, match="conflicts"), pytest.warns(DeprecationWarning):
        MixtureTrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="warmup_then_rsqrt",
                                 lr_schedule="constant_then_rsqrt", report_to=[])
    with pytest.raises(ValueError, match="lr_schedule"), pytest.warns(DeprecationWarning):
        MixtureTrainingArguments(output_dir=str(tmp_path), lr_schedule="rsqrt", report_to=[])
    with pytest.raises(ValueError, match=r"optimizer_args.beta\b.*Did you mean `beta1`"):
        MixtureTrainingArguments(output_dir=str(tmp_path), optim="adafactor", optimizer_args={"beta": 0.9}, report_to=[])


def test_deprecated_optimizer_spellings_fold_into_the_one_name(tmp_path):
    """The old prefixed Adafactor fields and `lr_schedule` still work (with a DeprecationWarning) and end up where the
    new names are read: `optimizer_args` and `lr_scheduler_type`; AdamW's options reach transformers' adam_* fields."""
    from hf_ptjf.train import MixtureTrainingArguments

    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.warns(DeprecationWarning, match="adafactor_beta1"):
        old = MixtureTrainingArguments(**common, optim="adafactor", adafactor_beta1=0.9, lr_schedule="warmup_then_rsqrt")
    new = MixtureTrainingArguments(**common, optim="adafactor", optimizer_args={"beta1": 0.9},
                                   lr_scheduler_type="warmup_then_rsqrt")
    for args in (old, new):
        assert args.optimizer_kwargs() == {"beta1": 0.9}
        assert (args.lr_scheduler_type, args.lr_schedule, args.adafactor_beta1) == ("warmup_then_rsqrt", None, None)
    with pytest.raises(ValueError, match="conflicts"), pytest.warns(DeprecationWarning):
        MixtureTrainingArguments(**common, optim="adafactor", adafactor_beta1=0.9, optimizer_args={"beta1": 0.5})
    adam = MixtureTrainingArguments(**common, optimizer_args='{"beta2": 0.98, "epsilon": 1e-6}')
    assert (adam.adam_beta1, adam.adam_beta2, adam.adam_epsilon) == (0.9, 0.98, 1e-6)
    cosine = MixtureTrainingArguments(**common, lr_scheduler_type="cosine")
    assert cosine.lr_scheduler_type == "cosine" and cosine.hf_ptjf_lr_schedule is None  # transformers' own


def test_recipe_optimizer_args_and_per_stage_keys():
    from hf_ptjf.recipe import RecipeError, parse_recipe

    raw = {
        "output_dir": "out",
        "tasks": [{"name": "en", "type": "lm", "versions": ["WEB"]}, {"name": "sw", "type": "lm", "versions": ["SUV"]}],
        "method": "restart",
        "method_args": {
            "total_steps": 10, "first_stage_steps": 4, "mixture": {"tau": 3.33},
            "stage": {"optimizer": "adafactor", "optimizer_args": {"beta1": 0.9, "factored": False},
                      "training": {"lr_schedule_steps": 2, "weight_decay": 0.0}},
            "first_stage": {"lr_scheduler": "constant_then_rsqrt"},
            "second_stage": {"lr_scheduler": "warmup_then_rsqrt", "training": {"lr_schedule_steps": 3}},
        },
    }
    cfg = parse_recipe(raw)
    first, second = cfg.stages
    assert (first.lr_scheduler, second.lr_scheduler) == ("constant_then_rsqrt", "warmup_then_rsqrt")
    assert first.training == {"lr_schedule_steps": 2, "weight_decay": 0.0}
    assert second.training == {"lr_schedule_steps": 3, "weight_decay": 0.0}  # merged over `stage`
    assert second.optimizer_training_args() == {"optimizer_args": {"beta1": 0.9, "factored": False}}
    bad = {**raw, "method_args": {**raw["method_args"], "stage": {"optimizer": "adafactor", "optimizer_args": {"beta": 0.9}}}}
    with pytest.raises(RecipeError, match="optimizer_args.beta.*Did you mean `beta1`"):
        parse_recipe(bad)
    adam = {**raw, "method_args": {**raw["method_args"], "stage": {"optimizer_args": {"beta2": 0.98}}}}
    assert parse_recipe(adam).stages[0].optimizer_training_args() == {"optimizer_args": {"beta2": 0.98}}
    with pytest.raises(RecipeError, match="set per stage by the runner"):
        parse_recipe({**raw, "lr_schedule": "warmup_then_rsqrt"})


def test_deepspeed_json_with_its_own_optimizer_or_scheduler_is_refused():
    from types import SimpleNamespace

    from hf_ptjf.train.arguments import check_deepspeed_config

    def check(optim: str, lr_schedule: str | None, ds: dict) -> None:
        check_deepspeed_config(SimpleNamespace(optim=optim, lr_scheduler_type=lr_schedule or "linear"), ds)

    check("adafactor", "warmup_then_rsqrt", {"zero_optimization": {"stage": 3}})
    check("adamw_torch", None, {"optimizer": {"type": "AdamW"}, "scheduler": {"type": "WarmupLR"}})
    with pytest.raises(ValueError, match="declares an `optimizer`"):
        check("adafactor", None, {"optimizer": {"type": "AdamW"}})
    with pytest.raises(ValueError, match="declares a `scheduler`"):
        check("adamw_torch", "constant_then_rsqrt", {"scheduler": {"type": "WarmupLR"}})


@pytest.mark.slow
def test_zero3_steps_with_hf_ptjf_adafactor_and_schedule(tmp_path):
    """2 CPU processes, DeepSpeed ZeRO-3 (cpu_zero3_2proc.yaml): client optimizer + client scheduler, and resume."""
    import json

    from .distributed import ROOT, accelerate_launch

    accelerate_launch("cpu_zero3_2proc.yaml", ROOT / "tests" / "scripts" / "zero3_adafactor_check.py", str(tmp_path))
    r = json.loads((tmp_path / "result.json").read_text())
    assert (r["world_size"], r["engine"], r["zero_optimizer"]) == (2, "DeepSpeedEngine", "DeepSpeedZeroOptimizer_Stage3")
    assert r["client_optimizer"] == "hf_ptjf.optim.Adafactor" and r["beta1"] == 0.9
    # ZeRO-3 hands the optimizer flat 1-D fp32 partitions: the second moment is full (unfactored) there
    assert r["state_keys"] == ["m", "step", "v"] and all(len(s) == 1 for s in r["state_shapes"])
    assert r["scheduler"] == "torch.optim.lr_scheduler.LambdaLR"
    f = warmup_then_rsqrt(3)
    assert [h["learning_rate"] for h in r["logs"]] == pytest.approx([0.01 * f(s) for s in range(8)])
    assert r["client_lr"] == pytest.approx([0.01 * f(8)] * len(r["client_lr"]))
    # every flat partition group was split into its weights (per-weight clipping and parameter scale)
    assert r["segments"] and all(n > 1 and total == numel for n, total, numel in r["segments"])
    # resuming from the step-4 checkpoint (DeepSpeed's optimizer state + the LambdaLR) continues exactly
    assert r["resumed_segments"] == len(r["segments"])
    resumed = [(h["step"], h["loss"], h["learning_rate"]) for h in r["resumed_logs"]]
    assert resumed == [(h["step"], h["loss"], h["learning_rate"]) for h in r["logs"] if h["step"] > 4]
    assert r["logs"][-1]["loss"] < r["logs"][0]["loss"]


# ---------------------------------------------------------------------- stage resets: where a schedule starts
def _linear_model_optimizer(lr: float = 1.0):
    model = torch.nn.Linear(2, 2)
    return torch.optim.SGD(model.parameters(), lr=lr)


def test_fast_forward_takes_up_a_schedule_where_it_was_left():
    from transformers import get_linear_schedule_with_warmup

    from hf_ptjf.optim import fast_forward

    full = get_linear_schedule_with_warmup(_linear_model_optimizer(), num_warmup_steps=2, num_training_steps=10)
    reference = []
    for _ in range(10):
        reference.append(full.get_last_lr()[0])
        full.optimizer.step()
        full.step()
    later = fast_forward(get_linear_schedule_with_warmup(_linear_model_optimizer(), 2, 10), 4)
    taken_up = []
    for _ in range(6):
        taken_up.append(later.get_last_lr()[0])
        later.optimizer.step()
        later.step()
    assert taken_up == pytest.approx(reference[4:])
    assert later.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="LambdaLR"):
        fast_forward(torch.optim.lr_scheduler.StepLR(_linear_model_optimizer(), 2), 3)


def test_anneal_decays_linearly_from_the_given_lr_to_zero():
    from hf_ptjf.optim import anneal_schedule

    optimizer = _linear_model_optimizer(lr=7.0)
    optimizer.param_groups[0]["initial_lr"] = 7.0  # a kept optimizer's own base LR: the anneal's start replaces it
    schedule = anneal_schedule(optimizer, [0.5], steps=4)
    lrs = []
    for _ in range(5):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx([0.5, 0.375, 0.25, 0.125, 0.0])
    state = schedule.state_dict()  # the multiplier is a callable object: a checkpoint keeps it
    assert state["lr_lambdas"][0] == {"steps": 4}
    with pytest.raises(ValueError, match="2 starting LRs for 1 parameter groups"):
        anneal_schedule(_linear_model_optimizer(), [0.1, 0.2], steps=4)
