"""Run under `accelerate launch`: the sampler and the trainer across ranks, at a fixed global batch of 8.

With 2 processes (accelerate_configs/cpu_ddp2.yaml) each rank takes batches of 4 and the gradients are averaged over
the ranks; with 1 process (cpu_single.yaml) the same 8 examples per step come as 2 accumulated batches of 4. Either
way the optimizer step uses the mean of the two per-batch mean losses' gradients, over the same two batches, so the
two runs agree up to the order of float additions (tests/test_distributed.py compares them).

Writes `<out>/result.json` (logs, sampler batches, counts) and `<out>/weights.pt` (final weights) from rank 0.
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

GLOBAL_BATCH, PER_DEVICE, STEPS = 8, 4, 6


def sampler_batches(accelerator: Accelerator) -> list[list[int]]:
    sampler = TemperatureMixtureSampler([1000, 50, 7], 64, temperature=2.0, seed=3)
    loader = accelerator.prepare(torch.utils.data.DataLoader(list(range(1057)), sampler=sampler, batch_size=4))
    return [batch.tolist() for batch in loader]


def main(out: str) -> None:
    torch.set_num_threads(1)  # deterministic kernels per process (OMP_NUM_THREADS=1 is set by the launcher too)
    accelerator = Accelerator()
    batches = gather_object([(accelerator.process_index, sampler_batches(accelerator))])
    train, evals = toy_mixture()
    accumulation = GLOBAL_BATCH // (PER_DEVICE * accelerator.num_processes)
    args = MixtureTrainingArguments(
        output_dir=f"{out}/trainer", max_steps=STEPS, per_device_train_batch_size=PER_DEVICE,
        gradient_accumulation_steps=accumulation, per_device_eval_batch_size=8, learning_rate=5e-3,
        logging_steps=1, save_strategy="no", eval_strategy="steps", eval_steps=3, report_to=[], seed=7,
        disable_tqdm=True, mixture_strategy="temperature", mixture_tau=3.0,
    )
    trainer = MixtureTrainer(model=tiny_t5(dropout=0.0), args=args, train_datasets=train, eval_dataset=evals,
                             data_collator=collate)
    trainer.train()
    if accelerator.is_main_process:
        result = {
            "world_size": accelerator.num_processes,
            "gradient_accumulation_steps": accumulation,
            "torch_threads": torch.get_num_threads(),
            "batches": dict(batches),
            "logs": trainer.state.log_history,
            "sampler_counts": trainer.mixture_sampler.task_counts(STEPS * GLOBAL_BATCH).tolist(),
        }
        Path(out, "result.json").write_text(json.dumps(result))
        weights = accelerator.unwrap_model(trainer.model).state_dict()
        torch.save({k: v.detach().clone() for k, v in weights.items()}, Path(out, "weights.pt"))
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the gloo group; without it the workers abort at exit


if __name__ == "__main__":
    main(sys.argv[1])
