"""Decoder-only benchmarks (issue 13): ratios measured side by side in one run, alternating the two sides.

[1] ``MixtureTrainer`` vs plain ``transformers.Trainer`` step time: the same tiny Llama, the same packed batches in
    the same order (the plain Trainer reads the mixture's stream as a fixed sequential dataset); and
    ``MixtureTrainer`` with vs without the per-task training loss.
[2] packing of ``lm`` tasks (Bible text, English + Romanian): the share of non-padding tokens in training
    batches, packed (rows of ``--length`` tokens per task, documents joined with ``</s>``) vs one document per
    row padded to the batch's longest; and training tokens/s (real tokens only) packed vs padded.

Usage: ``python bench/causal_bench.py [--only 1 2]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ptjf.data import CausalLMCollator, load_tasks, tokenize_tasks, train_tokenizer  # noqa: E402
from hf_ptjf.data.spec import TaskSpec  # noqa: E402
from hf_ptjf.modeling import ModelArguments, build_model  # noqa: E402
from hf_ptjf.mixture.sampler import TemperatureMixtureSampler  # noqa: E402
from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments, concatenate_tasks  # noqa: E402

LENGTH = 128


def bible_lm(length: int) -> tuple[dict, object]:
    """Packed lm rows of English (3,000 verses) and Romanian (300), and the tokenizer."""
    specs = [TaskSpec.from_dict({"name": "lm-en", "type": "lm", "versions": ["WEB"], "train_size": 3000}),
             TaskSpec.from_dict({"name": "lm-ro", "type": "lm", "versions": ["Cornilescu"], "train_size": 300})]
    corpora = load_tasks(specs, num_dev=20, num_test=20)
    tok = train_tokenizer(corpora, vocab_size=2000, max_sentences=4000, num_sentinels=0,
                          output_dir=tempfile.mkdtemp(prefix="causal-bench-tok-"))
    return corpora, tok


def tiny_llama(vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelArguments(family="llama", num_layers=2, d_model=64, d_ff=192, num_heads=4,
                                      dropout_rate=0.0, vocab_size=vocab, max_position_embeddings=512))


class StepTimes:
    """A TrainerCallback recording the wall time of every optimizer step (steady state: the median after warm-up)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def __getattr__(self, name):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def median_ms(self, skip: int = 10) -> float:
        return float(np.median(np.diff(self.ends[skip:]))) * 1000


def bench_trainer(packed: dict, tok, steps: int = 150, repeats: int = 3) -> None:
    from transformers import Trainer, TrainingArguments

    train = {name: dsd["train"] for name, dsd in packed.items()}
    collator = CausalLMCollator(tok)
    common = dict(max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=20,
                  save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    sizes = [len(d) for d in train.values()]
    stream = TemperatureMixtureSampler(sizes, steps * 8, temperature=2.0, seed=0).indices(0, steps * 8)
    fixed = concatenate_tasks(train).select(stream.tolist()).remove_columns(["task_id", "id"])
    with tempfile.TemporaryDirectory() as out:
        mix_args = MixtureTrainingArguments(output_dir=out, mixture_tau=2.0, **common)
        off_args = MixtureTrainingArguments(output_dir=out, mixture_tau=2.0, log_task_train_loss=False, **common)
        plain_args = TrainingArguments(output_dir=out, train_sampling_strategy="sequential", **common)
        sides = {
            "mix": lambda: MixtureTrainer(model=tiny_llama(len(tok)), args=mix_args, train_datasets=train,
                                          data_collator=collator),
            "off": lambda: MixtureTrainer(model=tiny_llama(len(tok)), args=off_args, train_datasets=train,
                                          data_collator=collator),
            "plain": lambda: Trainer(model=tiny_llama(len(tok)), args=plain_args, train_dataset=fixed,
                                     data_collator=collator),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for r in range(repeats):  # rotate the order, so that no side always runs first
            for name in order[r % 3:] + order[: r % 3]:
                trainer, clock = sides[name](), StepTimes()
                trainer.add_callback(clock)
                trainer.train()
                times[name].append(clock.median_ms())
    # per side: the median step time of each run (steady state, robust to the machine's noise), then the best run
    m, o, p = min(times["mix"]), min(times["off"]), min(times["plain"])
    paired = sorted(a / b for a, b in zip(times["mix"], times["plain"]))
    loss_paired = sorted(a / b for a, b in zip(times["mix"], times["off"]))
    print(f"[1] median step time after 10 warm-up steps of {steps}, tiny Llama, packed rows of {LENGTH} (best of "
          f"{repeats} runs): MixtureTrainer {m:.1f} ms, without per-task training loss {o:.1f} ms, Trainer {p:.1f} ms "
          f"-> MixtureTrainer/Trainer {m / p:.3f}x (paired {paired[0]:.3f}..{paired[-1]:.3f}); per-task training loss "
          f"costs {m / o:.3f}x (paired {loss_paired[0]:.3f}..{loss_paired[-1]:.3f})")


def _one_document_per_row(corpora: dict, tok) -> dict[str, list[list[int]]]:
    out = {}
    for name, dsd in corpora.items():
        ids = tok(list(dsd["train"]["text"]), max_length=LENGTH, truncation=True)["input_ids"]
        out[name] = [x if x[-1] == tok.eos_token_id else x + [tok.eos_token_id] for x in ids]
    return out


def bench_packing(corpora: dict, packed: dict, tok, batches: int = 30, batch_size: int = 16, repeats: int = 3) -> None:
    collator = CausalLMCollator(tok)
    rng = np.random.default_rng(0)
    padded_rows = _one_document_per_row(corpora, tok)
    shares = {}
    batch_sets = {"packed": [], "padded": []}
    for name in corpora:
        rows = packed[name]["train"]["input_ids"][:]
        for kind, source in (("packed", rows), ("padded", padded_rows[name])):
            real = total = 0
            for _ in range(batches):
                pick = rng.choice(len(source), size=batch_size, replace=False)
                batch = collator([{"input_ids": source[i]} for i in pick])
                real += int((batch["labels"] != -100).sum())  # real tokens: an lm row's labels are its ids
                total += batch["input_ids"].numel()
                batch_sets[kind].append(batch)
            shares[(name, kind)] = real / total
    model = tiny_llama(len(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def tokens_per_second(kind: str) -> float:
        real, start = 0, time.perf_counter()
        for batch in batch_sets[kind]:
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            real += int((batch["labels"] != -100).sum())
        return real / (time.perf_counter() - start)

    rates = {"packed": [], "padded": []}
    for _ in range(repeats):  # alternate the two sides
        for kind in rates:
            rates[kind].append(tokens_per_second(kind))
    pk, pd = max(rates["packed"]), max(rates["padded"])
    share_text = ", ".join(f"{n} {kind} {s:.3f}" for (n, kind), s in shares.items())
    print(f"[2] non-padding share of training batches ({batch_size} rows, rows of {LENGTH}): {share_text}; "
          f"training tokens/s (real tokens, best of {repeats}): packed {pk:,.0f}, padded {pd:,.0f} -> {pk / pd:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    corpora, tok = bible_lm(LENGTH)
    packed = tokenize_tasks(corpora, tok, max_source_length=LENGTH, causal=True)
    if 1 in args.only:
        bench_trainer(packed, tok)
    if 2 in args.only:
        bench_packing(corpora, packed, tok)


if __name__ == "__main__":
    main()
