"""End-of-stage evaluation: per-task held-out loss (every task, so forgetting shows) and, on hypotheses generated with
beam search, BLEU, chrF++ and the off-target rate (the share not in the task's target language), through the same
path for an encoder-decoder and a decoder-only (prompted) model."""

from __future__ import annotations

import contextlib
from typing import Any

from ..data.prepare import RecipeData
from ..data.spec import TaskSpec
from ..data.versions import VERSIONS
from ..metrics import compute_bleu, compute_chrf
from ..metrics.language import LanguageDetector, iso639_1, language_detector, off_target_verdicts, unknown_language_note
from ..recipe import EvalSpec

__all__ = ["detector_for", "eval_sets", "evaluate_stage", "generation_scores", "target_language"]


def eval_sets(data: RecipeData, split: str, limit: int | None) -> dict[str, Any]:
    """Every task's held-out split (all tasks, so forgetting of tasks outside the stage shows)."""
    out = {}
    for name, dsd in data.tokenized.items():
        ds = dsd[split]
        out[name] = ds.select(range(min(limit, len(ds)))) if limit else ds
    return out


def evaluate_stage(trainer: Any, data: RecipeData, spec: EvalSpec) -> tuple[dict[str, float | str], dict[str, list]]:
    """``(metrics, samples)``: ``eval_<task>_loss`` for every task and, for translation tasks when ``spec.bleu``,
    ``eval_<task>_bleu``, ``eval_<task>_chrf`` (chrF++) and ``eval_<task>_off_target`` (or, when the language detector
    does not know the target, ``eval_<task>_off_target_note`` saying so), with the decoded hypotheses beside source
    and reference and their detected language (``samples[task]``)."""
    metrics: dict[str, float | str] = _final_losses(trainer, list(data.tokenized)) or {
        k: v for k, v in trainer.evaluate().items() if k.endswith("_loss")
    }
    metrics.update(_plain_cross_entropy(trainer, list(data.tokenized)))
    samples: dict[str, list] = {}
    if spec.bleu and data.task_type == "translation":
        scores, samples = _generation_metrics(trainer, data, spec)
        metrics.update(scores)
        # to TensorBoard and the log history, at the stage's last step (numbers only: a note is not a scalar)
        trainer.log({k: v for k, v in scores.items() if isinstance(v, float)})
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


def target_language(spec: TaskSpec) -> str:
    """The language a task's hypotheses should be in, as the detector labels it (ISO 639-1): its language code when
    it has one (mBART-50 ``ro_RO``, NLLB ``ron_Latn``: what generation is forced to), else its ``lang``."""
    return iso639_1(spec.lang_code or spec.lang or "")


def detector_for(specs: list[TaskSpec]) -> LanguageDetector:
    """The detector of a run: restricted to the languages of the shipped Bible versions and of every task's target
    and source (the languages its hypotheses can come out in; :mod:`hf_ptjf.metrics.language` says why)."""
    languages = {v.lang for v in VERSIONS} | {target_language(s) for s in specs}
    languages |= {iso639_1(s.src_lang_code) for s in specs if s.src_lang_code}
    return language_detector(languages)


def generation_scores(task: str, target: str, hyps: list[str], refs: list[str], detector: LanguageDetector
                      ) -> tuple[dict[str, float | str], list[dict[str, Any]]]:
    """One task's BLEU, chrF++ and off-target rate (or the note saying the target is unknown to the detector), and
    per hypothesis its detected ``language`` and, with a known target, whether it is ``off_target``."""
    scores: dict[str, float | str] = {
        f"eval_{task}_bleu": round(float(compute_bleu(hyps, [[r] for r in refs])["score"]), 2),
        f"eval_{task}_chrf": round(float(compute_chrf(hyps, [[r] for r in refs])["score"]), 2),
    }
    if detector.knows(target):
        detected, flags = off_target_verdicts(hyps, target, detector)
        scores[f"eval_{task}_off_target"] = round(sum(flags) / len(flags), 4)
        verdicts = [{"language": lang, "off_target": flag} for lang, flag in zip(detected, flags)]
    else:
        scores[f"eval_{task}_off_target_note"] = unknown_language_note(target)
        verdicts = [{"language": lang} for lang in detector.detect(hyps)]
    return scores, verdicts


def _generation_metrics(trainer: Any, data: RecipeData, spec: EvalSpec
                        ) -> tuple[dict[str, float | str], dict[str, list]]:
    detector = detector_for(data.specs)
    targets = {s.name: target_language(s) for s in data.specs}
    scores: dict[str, float | str] = {}
    samples: dict[str, list] = {}
    for name, ds in eval_sets(data, spec.split, spec.bleu_examples).items():
        text = data.corpora[name][spec.split]
        refs = ds["target"] if "target" in ds.column_names else text["target"][: len(ds)]
        forced = data.generation_kwargs(name)
        preds = _generate(trainer, data, ds, spec, name, forced)
        hyps = data.tokenizer.batch_decode(preds, skip_special_tokens=True)
        task_scores, verdicts = generation_scores(name, targets[name], hyps, list(refs), detector)
        scores.update(task_scores)
        samples[name] = [{"source": src, "reference": ref, "hypothesis": hyp, **verdict}
                         for src, ref, hyp, verdict in zip(text["source"][: len(ds)], refs, hyps, verdicts)]
        if "forced_bos_token_id" in forced:
            _record_first_tokens(samples[name], preds, data.tokenizer, data.causal)
    return scores, samples


def _generate(trainer: Any, data: RecipeData, ds: Any, spec: EvalSpec, name: str, forced: dict[str, Any]) -> Any:
    """The generated token ids of a task's evaluation examples, in dataset order, padding as the pad token."""
    prompts = contextlib.nullcontext()
    if data.causal:  # a decoder-only model continues its prompt (left-padded), without the reference after it
        ds = ds.remove_columns([c for c in ("input_ids", "labels") if c in ds.column_names])
        ds = ds.rename_column("prompt_ids", "input_ids")
        prompts = data.collator.prompts()
    with prompts:
        out = trainer.predict(ds, metric_key_prefix=f"bleu_{name}", num_beams=spec.num_beams,
                              max_new_tokens=spec.max_new_tokens, **forced)
    # ranks get consecutive batches round-robin and the last ones are padded with repeats to
    # even out; gathered results are in dataset order, so the first len(ds) rows are the answers
    preds = out.predictions[: len(ds)]
    preds[preds < 0] = data.tokenizer.pad_token_id
    return preds


def _record_first_tokens(rows: list[dict[str, str]], preds: Any, tokenizer: Any, causal: bool) -> None:
    """``first_token`` of each sample: the token generated first, which a language-code run forces to the target
    code. The hypothesis skips special tokens, so without this a sample cannot show that the code was generated."""
    first = 0 if causal else 1  # an encoder-decoder's output starts with the decoder start token
    for row, token in zip(rows, tokenizer.convert_ids_to_tokens(preds[:, first].tolist())):
        row["first_token"] = token
