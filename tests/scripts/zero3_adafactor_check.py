"""Run under `accelerate launch` (DeepSpeed ZeRO-3, 2 CPU processes): hf_ptjf's Adafactor and LR schedule as
DeepSpeed's client optimizer and scheduler (the JSON declares neither), then a resume from the step-4 checkpoint.
Writes `<out>/result.json` from rank 0.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from accelerate.state import AcceleratorState, GradientState  # noqa: E402

from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_mixture  # noqa: E402


def train(output_dir: str, resume: str | None = None) -> MixtureTrainer:
    train_sets, _ = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=output_dir, max_steps=8, per_device_train_batch_size=4, learning_rate=0.01,
        logging_steps=1, save_strategy="steps", save_steps=4, eval_strategy="no", report_to=[], seed=7,
        disable_tqdm=True, ddp_backend="gloo", mixture_strategy="temperature", mixture_tau=3.0,
        optim="adafactor", optimizer_args={"beta1": 0.9, "factored": False, "multiply_by_parameter_scale": True},
        lr_scheduler_type="warmup_then_rsqrt", lr_schedule_steps=3,
    )
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train_sets, data_collator=collate)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def main(out: str) -> None:
    trainer = train(f"{out}/run")
    engine = trainer.model_wrapped
    basic = engine.optimizer.optimizer  # DeepSpeedZeroOptimizer_Stage3 -> the client optimizer it steps
    state = [s for s in basic.state.values() if s]
    result = {
        "world_size": trainer.args.world_size,
        "engine": type(engine).__name__,
        "zero_optimizer": type(engine.optimizer).__name__,
        "client_optimizer": f"{type(basic).__module__}.{type(basic).__name__}",
        "beta1": basic.defaults["beta1"],
        "client_lr": [g["lr"] for g in basic.param_groups],  # what Adafactor steps with after 8 updates
        "state_keys": sorted({k for s in state for k in s}),
        "state_shapes": sorted({tuple(s["v"].shape) for s in state if "v" in s}),
        "segments": [(len(n), sum(n), t.numel()) for t, n in basic.segments.items()],
        "scheduler": f"{type(trainer.lr_scheduler).__module__}.{type(trainer.lr_scheduler).__name__}",
        "logs": [h for h in trainer.state.log_history if "loss" in h],
    }
    trainer.accelerator.free_memory()
    AcceleratorState._reset_state(reset_partial_state=False)  # as the runner does between stages
    GradientState._reset_state()
    resumed = train(f"{out}/resumed", resume=f"{out}/run/checkpoint-4")
    result["resumed_logs"] = [h for h in resumed.state.log_history if "loss" in h and h["step"] > 4]
    result["resumed_segments"] = len(resumed.model_wrapped.optimizer.optimizer.segments)
    if resumed.accelerator.is_main_process:
        Path(out, "result.json").write_text(json.dumps(result, default=str))
    resumed.accelerator.wait_for_everyone()
    resumed.accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
