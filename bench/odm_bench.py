"""Online mixing (ODM) overhead, measured side by side in one run; prints ratios (absolute times are noisy here).

    python bench/odm_bench.py              # both
    python bench/odm_bench.py --only 1

1. Step time of MixtureTrainer with ODM (rates updated after every step: the most work it can do) vs the same trainer
   at fixed rates, one process, a T5 of the sweeps' size (d_model 128, 2+2 layers, batch 32, ~1.9M parameters with the
   toy vocabulary's embeddings smaller), runs alternated so that they share the machine's noise. Goal: <= 1.02x.
2. Resume cost (load_state_dict + the first batch of indices) of a sampler whose rates an online strategy changed
   every step, at stream positions 1e3, 1e6 and 1e8, beside the fixed-rate sampler's: flat in the position.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench.core_bench import timed  # noqa: E402  (best of n, as in the core benchmark)
from hf_ptjf.mixture import ODM  # noqa: E402
from hf_ptjf.mixture.sampler import TemperatureMixtureSampler  # noqa: E402

SIZES = (2_000_000, 50_000, 5_000)


def bench_steps(steps: int = 60, repeats: int = 4) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments
    from tests.toy import collate, toy_task

    tasks = {"hr": toy_task(8000, 3, 0, length=(20, 60)), "lr": toy_task(300, 7, 1, length=(20, 60))}

    def model():
        torch.manual_seed(0)
        return T5ForConditionalGeneration(T5Config(
            vocab_size=48, d_model=128, d_ff=512, num_layers=2, num_heads=4, d_kv=32, dropout_rate=0.1,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))

    times: dict[str, list[float]] = {"fixed": [], "odm": []}
    with tempfile.TemporaryDirectory() as out:
        args = MixtureTrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=32,
                                        learning_rate=1e-3, logging_steps=25, save_strategy="no", eval_strategy="no",
                                        report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                                        dataloader_pin_memory=False)
        for _ in range(repeats):
            for kind in ("fixed", "odm"):
                trainer = MixtureTrainer(model=model(), args=args, train_datasets=tasks, data_collator=collate,
                                         rates=[0.7, 0.3], online=ODM(update_every=1) if kind == "odm" else None)
                times[kind].append(trainer.train().metrics["train_runtime"])
    fixed, odm = min(times["fixed"]), min(times["odm"])
    paired = sorted(o / f for o, f in zip(times["odm"], times["fixed"]))
    print(f"[1] step time over {steps} steps (best of {repeats}): fixed rates {fixed / steps * 1000:.1f} ms, ODM "
          f"(update every step) {odm / steps * 1000:.1f} ms -> {odm / fixed:.3f}x (paired {paired[0]:.3f}.."
          f"{paired[-1]:.3f})")


def _online_state(position: int, per_step: int = 64) -> dict:
    """The checkpoint state of a sampler whose rates changed after every step of ``per_step`` positions (an online
    strategy's schedule at ``position``: the segments behind it forgotten)."""
    sampler = TemperatureMixtureSampler(SIZES, 10**9, [0.5, 0.3, 0.2], seed=1)
    rng = np.random.default_rng(0)
    step = position // per_step
    for s in range(max(1, step - 3), step + 4):  # the segments around the position (as a run keeps them)
        sampler.tasks.append(s * per_step, rng.dirichlet([1, 1, 1]))
    sampler.tasks.forget_before(position)
    return json.loads(json.dumps(sampler.state_dict(position)))


def bench_resume() -> None:
    rows = []
    for position in (10**3, 10**6, 10**8):
        fixed_state = {**TemperatureMixtureSampler(SIZES, 10**9, [0.5, 0.3, 0.2], seed=1).state_dict(),
                       "position": position}
        online_state = _online_state(position)

        def resume(state: dict, lookahead: int) -> None:
            fresh = TemperatureMixtureSampler(SIZES, 10**9, [0.5, 0.3, 0.2], seed=1)
            fresh.lookahead = lookahead
            fresh.load_state_dict(state)
            it = iter(fresh)
            [next(it) for _ in range(64)]

        rows.append((position, timed(lambda: resume(fixed_state, 2**18), repeats=5),
                     timed(lambda: resume(online_state, 64), repeats=5),
                     len(json.dumps(online_state))))
    text = ", ".join(f"pos {p:.0e}: fixed {f * 1000:.1f} ms, online {o * 1000:.1f} ms (state {n} bytes)"
                     for p, f, o, n in rows)
    print(f"[2] resume (load + first batch): {text}; online 1e8/1e3 ratio {rows[-1][2] / rows[0][2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if 1 in args.only:
        bench_steps()
    if 2 in args.only:
        bench_resume()


if __name__ == "__main__":
    main()
