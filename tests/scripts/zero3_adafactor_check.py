"""Run under `accelerate launch` (DeepSpeed ZeRO-3, 2 CPU processes): hf_ptjf's Adafactor and LR schedule as
DeepSpeed's client optimizer and scheduler (the JSON declares neither). Writes `<out>/result.json` from rank 0.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_ptjf.trainer import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_mixture  # noqa: E402


def main(out: str) -> None:
    train, _ = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=f"{out}/trainer", max_steps=8, per_device_train_batch_size=4, learning_rate=0.01,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], seed=7, disable_tqdm=True,
        ddp_backend="gloo", mixture_strategy="temperature", mixture_tau=3.0,
        optim="adafactor", adafactor_beta1=0.9, adafactor_factored=False,
        lr_scheduler_type="warmup_then_rsqrt", lr_schedule_steps=3,
    )
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
    trainer.train()
    engine = trainer.model_wrapped
    basic = engine.optimizer.optimizer  # DeepSpeedZeroOptimizer_Stage3 -> the client optimizer it steps
    state = [s for s in basic.state.values() if s]
    result = {
        "world_size": trainer.args.world_size,
        "engine": type(engine).__name__,
        "zero_optimizer": type(engine.optimizer).__name__,
        "client_optimizer": f"{type(basic).__module__}.{type(basic).__name__}",
        "beta1": basic.defaults["beta1"],
        "state_keys": sorted({k for s in state for k in s}),
        "state_shapes": sorted({tuple(s["v"].shape) for s in state if "v" in s}),
        "scheduler": f"{type(trainer.lr_scheduler).__module__}.{type(trainer.lr_scheduler).__name__}",
        "logs": [h for h in trainer.state.log_history if "loss" in h],
    }
    if trainer.accelerator.is_main_process:
        Path(out, "result.json").write_text(json.dumps(result, default=str))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
