"""End-of-stage evaluation: per-task held-out loss (every task, so forgetting shows) and BLEU with beam search."""

from __future__ import annotations

from typing import Any

from ..data.prepare import RecipeData
from ..recipe import EvalSpec

__all__ = ["eval_sets", "evaluate_stage"]


def eval_sets(data: RecipeData, split: str, limit: int | None) -> dict[str, Any]:
    """Every task's held-out split (all tasks, so forgetting of tasks outside the stage shows)."""
    out = {}
    for name, dsd in data.tokenized.items():
        ds = dsd[split]
        out[name] = ds.select(range(min(limit, len(ds)))) if limit else ds
    return out


def evaluate_stage(trainer: Any, data: RecipeData, spec: EvalSpec) -> dict[str, float]:
    """``eval_<task>_loss`` for every task, and ``eval_<task>_bleu`` for translation tasks when ``spec.bleu``."""
    metrics = {k: v for k, v in trainer.evaluate().items() if k.endswith("_loss")}
    if spec.bleu and data.task_type == "translation":
        metrics.update(_bleu(trainer, data, spec))
    return metrics


def _bleu(trainer: Any, data: RecipeData, spec: EvalSpec) -> dict[str, float]:
    from ..metrics import compute_bleu

    tokenizer = data.tokenizer
    scores = {}
    for name, ds in eval_sets(data, spec.split, spec.bleu_examples).items():
        refs = ds["target"] if "target" in ds.column_names else data.corpora[name][spec.split]["target"][: len(ds)]
        out = trainer.predict(ds, metric_key_prefix=f"bleu_{name}", num_beams=spec.num_beams,
                              max_new_tokens=spec.max_new_tokens)
        # ranks get consecutive batches round-robin and the last ones are padded with repeats to
        # even out; gathered results are in dataset order, so the first len(ds) rows are the answers
        preds = out.predictions[: len(ds)]
        preds[preds < 0] = tokenizer.pad_token_id
        hyps = tokenizer.batch_decode(preds, skip_special_tokens=True)
        scores[f"eval_{name}_bleu"] = round(float(compute_bleu(hyps, [[r] for r in refs])["score"]), 2)
    return scores
