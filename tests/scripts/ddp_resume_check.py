"""Run under `accelerate launch` (2 processes): a resume with dropout continues exactly, map-style and streamed.

For each data kind: an uninterrupted 8-step run, a run stopped after its step-4 checkpoint, and a resume of it; each
rank restores its own RNG state (rng_state_<rank>.pth) and its DataLoader must not draw from it. Writes
`<out>/resume.json` from rank 0: the training losses after step 4 of both runs and whether every weight is equal.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_mixture  # noqa: E402

STEPS, CUT = 8, 4


class Stop(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        control.should_training_stop = state.global_step >= CUT


def run(out: str, data: str, stop: bool = False, resume: str | None = None) -> MixtureTrainer:
    train, _ = toy_mixture()
    if data == "stream":
        train = {"hr": train["hr"].to_iterable_dataset(num_shards=4), "lr": train["lr"].to_iterable_dataset(num_shards=2)}
    args = MixtureTrainingArguments(
        output_dir=out, max_steps=STEPS, per_device_train_batch_size=4, learning_rate=5e-3, warmup_steps=2,
        logging_steps=1, save_steps=CUT, report_to=[], use_cpu=True, seed=7, disable_tqdm=True,
        dataloader_pin_memory=False, remove_unused_columns=data == "map", ddp_backend="gloo")
    trainer = MixtureTrainer(model=tiny_t5(dropout=0.3), args=args, train_datasets=train, data_collator=collate,
                             rates={"hr": 0.7, "lr": 0.3})
    if stop:
        trainer.add_callback(Stop())
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def main(out: str) -> None:
    torch.set_num_threads(1)
    result = {}
    for data in ("map", "stream"):
        full = run(f"{out}/{data}/full", data)
        run(f"{out}/{data}/cut", data, stop=True)
        resumed = run(f"{out}/{data}/cut", data, resume=f"{out}/{data}/cut/checkpoint-{CUT}")
        losses = [[h["step"], h["loss"]] for h in full.state.log_history if "loss" in h and h["step"] > CUT]
        again = [[h["step"], h["loss"]] for h in resumed.state.log_history if "loss" in h and h["step"] > CUT]
        same = all(torch.equal(p, q) for p, q in zip(full.model.parameters(), resumed.model.parameters()))
        result[data] = {"full": losses, "resumed": again, "same_weights": same,
                        "world_size": full.args.world_size}
    if PartialState().is_main_process:
        Path(out, "resume.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
