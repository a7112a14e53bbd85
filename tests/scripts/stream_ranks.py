"""Run under `accelerate launch` with 2 processes: a streamed mixture with 2 DataLoader workers per process.

Every row a reader hands to the collator is appended to `<out>/rows-<rank>-<pid>.jsonl` as
{rank, worker, task, row}; tests/test_streaming.py checks that the readers' first passes are disjoint and cover
each task.
"""

import json
import os
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments  # noqa: E402
from tests.toy import collate, tiny_t5, toy_task  # noqa: E402

OUT = Path(sys.argv[1])


class Recording:
    """A collator writing every row's (rank, worker, task, row id) to this process's file."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self, rows):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        with open(OUT / f"rows-{self.rank}-{os.getpid()}.jsonl", "a") as f:
            for r in rows:
                task = "hr" if r["task_id"] == 0 else "lr"
                f.write(json.dumps({"rank": self.rank, "worker": worker, "task": task, "row": r["row"]}) + "\n")
        return collate([{k: v for k, v in r.items() if k != "row"} for r in rows])


def main() -> None:
    accelerator = Accelerator()
    OUT.mkdir(parents=True, exist_ok=True)
    hr = toy_task(600, 3, 0)
    hr = hr.add_column("row", [f"h{i}" for i in range(len(hr))])
    lr = toy_task(40, 7, 1)
    lr = lr.add_column("row", [f"l{i}" for i in range(len(lr))])
    args = MixtureTrainingArguments(
        output_dir=str(OUT / "trainer"), max_steps=12, per_device_train_batch_size=4, learning_rate=5e-3,
        logging_steps=4, save_strategy="no", eval_strategy="no", report_to=[], seed=7, disable_tqdm=True,
        dataloader_num_workers=2, remove_unused_columns=False, dataloader_pin_memory=False,
    )
    # 4 shards of each task: 4 readers (2 processes x 2 workers) take one shard each per pass
    train = {"hr": hr.to_iterable_dataset(num_shards=4), "lr": lr.to_iterable_dataset(num_shards=4)}
    trainer = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, rates={"hr": 0.5, "lr": 0.5},
                             data_collator=Recording(args.process_index))
    trainer.train()
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
