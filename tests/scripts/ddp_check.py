"""Run under `accelerate launch` with 2 processes: checks the sampler and trainer across ranks.

Writes `<out>/result.json` from rank 0.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_ptjf.mixture.sampler import TemperatureMixtureSampler  # noqa: E402
from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_mixture  # noqa: E402


def sampler_batches(accelerator: Accelerator) -> list[list[int]]:
    sampler = TemperatureMixtureSampler([1000, 50, 7], 64, temperature=2.0, seed=3)
    loader = accelerator.prepare(torch.utils.data.DataLoader(list(range(1057)), sampler=sampler, batch_size=4))
    return [batch.tolist() for batch in loader]


def main(out: str) -> None:
    accelerator = Accelerator()
    batches = gather_object([(accelerator.process_index, sampler_batches(accelerator))])
    train, evals = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=f"{out}/trainer", max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], seed=7, disable_tqdm=True,
        mixture_strategy="temperature", mixture_tau=3.0,
    )
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    if accelerator.is_main_process:
        result = {
            "world_size": accelerator.num_processes,
            "batches": dict(batches),
            "logs": logs,
            "sampler_counts": trainer.mixture_sampler.task_counts(6 * 8).tolist(),
        }
        Path(out, "result.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the gloo group; without it the workers abort at exit


if __name__ == "__main__":
    main(sys.argv[1])
