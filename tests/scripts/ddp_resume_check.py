"""Run under `accelerate launch` (2 processes): a resume with dropout continues exactly, map-style and streamed, at
fixed rates and with an online mixture (ODM, rates updated every 2 steps).

For each data kind and mixing: an uninterrupted 8-step run, a run stopped after its step-4 checkpoint, and a resume of
it; each rank restores its own RNG state (rng_state_<rank>.pth) and its DataLoader must not draw from it. Writes
`<out>/resume.json` from rank 0: the training losses (and rates) after step 4 of both runs and whether every weight is
equal; each rank writes its online strategy's final state to `<out>/<case>/rank<r>.json` (the ranks must agree).
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_ptjf.mixture import ODM  # noqa: E402
from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_mixture  # noqa: E402

STEPS, CUT = 8, 4


class Stop(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        control.should_training_stop = state.global_step >= CUT


def run(out: str, data: str, mixing: str, stop: bool = False, resume: str | None = None) -> MixtureTrainer:
    train, _ = toy_mixture()
    if data == "stream":
        train = {"hr": train["hr"].to_iterable_dataset(num_shards=4), "lr": train["lr"].to_iterable_dataset(num_shards=2)}
    args = MixtureTrainingArguments(
        output_dir=out, max_steps=STEPS, per_device_train_batch_size=4, learning_rate=5e-3, warmup_steps=2,
        logging_steps=1, save_steps=CUT, report_to=[], use_cpu=True, seed=7, disable_tqdm=True,
        dataloader_pin_memory=False, remove_unused_columns=data == "map", ddp_backend="gloo")
    trainer = MixtureTrainer(model=tiny_t5(dropout=0.3), args=args, train_datasets=train, data_collator=collate,
                             rates={"hr": 0.7, "lr": 0.3}, online=ODM(update_every=2) if mixing == "odm" else None)
    if stop:
        trainer.add_callback(Stop())
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def main(out: str) -> None:
    torch.set_num_threads(1)
    result = {}
    for case in ("map", "stream", "map-odm", "stream-odm"):
        data, mixing = (case.split("-") + ["fixed"])[:2]
        full = run(f"{out}/{case}/full", data, mixing)
        run(f"{out}/{case}/cut", data, mixing, stop=True)
        resumed = run(f"{out}/{case}/cut", data, mixing, resume=f"{out}/{case}/cut/checkpoint-{CUT}")

        def logged(trainer):
            return [[h["step"], h["loss"], h.get("rate_lr")] for h in trainer.state.log_history
                    if "loss" in h and h["step"] > CUT]
        same = all(torch.equal(p, q) for p, q in zip(full.model.parameters(), resumed.model.parameters()))
        result[case] = {"full": logged(full), "resumed": logged(resumed), "same_weights": same,
                        "world_size": full.args.world_size}
        if resumed.online_mixer:
            state = {"strategy": resumed.online_mixer.strategy.state_dict(),
                     "schedule": resumed.mixture_data.schedule.state_dict()}
            Path(out, case, f"rank{resumed.args.process_index}.json").write_text(json.dumps(state))
    if PartialState().is_main_process:
        Path(out, "resume.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
