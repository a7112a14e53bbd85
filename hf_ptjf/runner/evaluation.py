"""End-of-stage evaluation: per-task held-out loss (every task, so forgetting shows) and BLEU with beam search,
through the same path for an encoder-decoder and a decoder-only (prompted) model."""

from __future__ import annotations

import contextlib
from typing import Any

from ..data.prepare import RecipeData
from ..metrics import compute_bleu
from ..recipe import EvalSpec

__all__ = ["eval_sets", "evaluate_stage"]


def eval_sets(data: RecipeData, split: str, limit: int | None) -> dict[str, Any]:
    """Every task's held-out split (all tasks, so forgetting of tasks outside the stage shows)."""
    out = {}
    for name, dsd in data.tokenized.items():
        ds = dsd[split]
        out[name] = ds.select(range(min(limit, len(ds)))) if limit else ds
    return out


def evaluate_stage(trainer: Any, data: RecipeData, spec: EvalSpec) -> tuple[dict[str, float], dict[str, list]]:
    """``(metrics, samples)``: ``eval_<task>_loss`` for every task and, for translation tasks when ``spec.bleu``,
    ``eval_<task>_bleu`` with the decoded hypotheses beside source and reference (``samples[task]``)."""
    metrics = _final_losses(trainer, list(data.tokenized)) or {
        k: v for k, v in trainer.evaluate().items() if k.endswith("_loss")
    }
    metrics.update(_plain_cross_entropy(trainer, list(data.tokenized)))
    samples: dict[str, list] = {}
    if spec.bleu and data.task_type == "translation":
        bleu, samples = _bleu(trainer, data, spec)
        metrics.update(bleu)
        trainer.log(dict(bleu))  # to TensorBoard and the log history, at the stage's last step
    return metrics, samples


def _plain_cross_entropy(trainer: Any, tasks: list[str]) -> dict[str, float]:
    """``eval_<task>_ce``: the final validation loss without label smoothing (nats/token, comparable across
    recipes and with the literature), when the losses above include it; ``{}`` when they already are plain."""
    if not trainer.args.label_smoothing_factor or not getattr(trainer.args, "label_smoothing_in_eval", True):
        return {}
    smoother, trainer.label_smoother = trainer.label_smoother, None
    try:
        plain = trainer.evaluate(metric_key_prefix="ce")
    finally:
        trainer.label_smoother = smoother
    return {f"eval_{t}_ce": plain[f"ce_{t}_loss"] for t in tasks if f"ce_{t}_loss" in plain}


def _final_losses(trainer: Any, tasks: list[str]) -> dict[str, float]:
    """The losses of an evaluation the trainer already ran at its last step (eval_steps divides max_steps), so
    the last step is not evaluated and logged twice; ``{}`` when there was none."""
    step = trainer.state.global_step
    found = {}
    for entry in trainer.state.log_history:
        if entry.get("step") == step:
            found.update({k: v for k, v in entry.items() if k.startswith("eval_") and k.endswith("_loss")})
    return found if all(f"eval_{t}_loss" in found for t in tasks) else {}


def _bleu(trainer: Any, data: RecipeData, spec: EvalSpec) -> tuple[dict[str, float], dict[str, list]]:
    tokenizer = data.tokenizer
    scores, samples = {}, {}
    for name, ds in eval_sets(data, spec.split, spec.bleu_examples).items():
        text = data.corpora[name][spec.split]
        refs = ds["target"] if "target" in ds.column_names else text["target"][: len(ds)]
        prompts = contextlib.nullcontext()
        if data.causal:  # a decoder-only model continues its prompt (left-padded), without the reference after it
            ds = ds.remove_columns([c for c in ("input_ids", "labels") if c in ds.column_names])
            ds = ds.rename_column("prompt_ids", "input_ids")
            prompts = data.collator.prompts()
        forced = data.generation_kwargs(name)
        with prompts:
            out = trainer.predict(ds, metric_key_prefix=f"bleu_{name}", num_beams=spec.num_beams,
                                  max_new_tokens=spec.max_new_tokens, **forced)
        # ranks get consecutive batches round-robin and the last ones are padded with repeats to
        # even out; gathered results are in dataset order, so the first len(ds) rows are the answers
        preds = out.predictions[: len(ds)]
        preds[preds < 0] = tokenizer.pad_token_id
        hyps = tokenizer.batch_decode(preds, skip_special_tokens=True)
        scores[f"eval_{name}_bleu"] = round(float(compute_bleu(hyps, [[r] for r in refs])["score"]), 2)
        samples[name] = [{"source": src, "reference": ref, "hypothesis": hyp}
                         for src, ref, hyp in zip(text["source"][: len(ds)], refs, hyps)]
        if "forced_bos_token_id" in forced:
            _record_first_tokens(samples[name], preds, tokenizer, data.causal)
    return scores, samples


def _record_first_tokens(rows: list[dict[str, str]], preds: Any, tokenizer: Any, causal: bool) -> None:
    """``first_token`` of each sample: the token generated first, which a language-code run forces to the target
    code. The hypothesis skips special tokens, so without this a sample cannot show that the code was generated."""
    first = 0 if causal else 1  # an encoder-decoder's output starts with the decoder start token
    for row, token in zip(rows, tokenizer.convert_ids_to_tokens(preds[:, first].tolist())):
        row["first_token"] = token
