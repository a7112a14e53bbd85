"""End-of-stage evaluation with and without the translation metrics added by issue 28 (chrF++, the off-target rate
with py3langid), side by side in one run, alternating the two sides.

The evaluation is the runner's own (:func:`hf_ptjf.runner.evaluation.evaluate_stage`: every task's loss, then beam
search on ``eval.bleu_examples`` examples per task and the scores) on the quickstart's settings (En->{Fr, Ro, Hi}
Bible tasks, the quickstart's model size, 48 examples a task, 4 beams, up to 48 new tokens), with a randomly
initialised model, whose hypotheses run to ``max_new_tokens``: the slowest generation, so the overhead measured is
the largest share it can be of an evaluation of this size. "Without" replaces the scoring of each task with BLEU
alone (what the runner did before); the detector's model is loaded once per process, before the timed
evaluations (its load time is reported apart).

    python bench/eval_bench.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

import hf_ptjf.runner.evaluation as evaluation  # noqa: E402
from hf_ptjf.data.prepare import prepare_recipe_data  # noqa: E402
from hf_ptjf.metrics import compute_bleu  # noqa: E402
from hf_ptjf.modeling import build_model  # noqa: E402
from hf_ptjf.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the quickstart's tasks, evaluation and model, on less training data (the tokenizer trains in seconds)
OVERRIDES = [
    "tasks=[{name: en-fr, tgt_versions: [Segond], lang: fr, train_size: 2000},"
    " {name: en-ro, tgt_versions: [Cornilescu], lang: ro, train_size: 1000},"
    " {name: en-hi, tgt_versions: [IRV], lang: hi, train_size: 1000}]",
    "data={num_dev: 100, num_test: 100, max_source_length: 64, max_target_length: 64}",
    "tokenizer={vocab_size: 2000, tau: 3.33}",
    "model={num_layers: 2, d_model: 128, d_ff: 512, num_heads: 4, dropout_rate: 0.1}",
    "eval={loss_examples: 64, bleu: true, bleu_examples: 48, num_beams: 4, max_new_tokens: 48}",
    "hub={mode: none}",
]


def bleu_only(task, target, hyps, refs, detector):
    """The scoring before issue 28: BLEU alone, no detected languages."""
    return {f"eval_{task}_bleu": round(float(compute_bleu(hyps, [[r] for r in refs])["score"]), 2)}, [{} for _ in hyps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations per side (alternating)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    cfg = load_recipe(ROOT / "recipes" / "configs" / "quickstart.yaml", [f"output_dir={work / 'run'}", *OVERRIDES])
    data = prepare_recipe_data(cfg, work / "tokenizer")
    model = build_model(cfg.model, data.tokenizer)
    trainer = Seq2SeqTrainer(
        model=model, data_collator=data.collator, processing_class=data.tokenizer,
        eval_dataset=evaluation.eval_sets(data, cfg.eval.split, cfg.eval.loss_examples),
        args=Seq2SeqTrainingArguments(output_dir=str(work / "out"), per_device_eval_batch_size=32,
                                      predict_with_generate=True, report_to=[], disable_tqdm=True,
                                      dataloader_pin_memory=False, use_cpu=True),
    )
    t_load = time.perf_counter()
    evaluation.detector_for(data.specs)
    load_s = time.perf_counter() - t_load
    full = evaluation.generation_scores
    times: dict[str, list[float]] = {"without": [], "with": []}
    metrics, samples = {}, {}
    for _ in range(args.repeats):
        for side, scoring in (("without", bleu_only), ("with", full)):
            evaluation.generation_scores = scoring
            t = time.perf_counter()
            metrics[side], samples = evaluation.evaluate_stage(trainer, data, cfg.eval)
            times[side].append(time.perf_counter() - t)
    evaluation.generation_scores = full
    print(f"detector model load {load_s * 1000:.0f} ms (once per process)")
    print("[1] whole evaluations (losses, beam search, scores), alternating:")
    for side, ts in times.items():
        print(f"{side:>8} chrF++ and off-target: " + ", ".join(f"{t:.2f}" for t in ts)
              + f" s per evaluation (median {statistics.median(ts):.2f} s)")
    ratio = statistics.median(times["with"]) / statistics.median(times["without"])
    print(f"    ratio with / without: {ratio:.3f} (3 tasks x 48 hypotheses, 4 beams, up to 48 new tokens)")
    scoring_ms = _scoring_times(samples, data.specs, args.repeats * 10)
    added = scoring_ms["with"] - scoring_ms["without"]
    print(f"[2] the scoring alone, on the same {sum(map(len, samples.values()))} hypotheses (median of "
          f"{args.repeats * 10}): BLEU {scoring_ms['without']:.1f} ms, BLEU + chrF++ + off-target "
          f"{scoring_ms['with']:.1f} ms: +{added:.1f} ms an evaluation, "
          f"{added / 1000 / statistics.median(times['without']):.2%} of the median evaluation without them")
    print("with:", {k: v for k, v in metrics["with"].items() if not k.endswith(("_loss", "_ce"))})


def _scoring_times(samples: dict, specs: list, repeats: int) -> dict[str, float]:
    """Median milliseconds to score every task's hypotheses, BLEU alone vs the full scoring, alternating."""
    detector = evaluation.detector_for(specs)
    targets = {s.name: evaluation.target_language(s) for s in specs}
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(repeats):
        for side, scoring in (("without", bleu_only), ("with", evaluation.generation_scores)):
            t = time.perf_counter()
            for task, rows in samples.items():
                scoring(task, targets[task], [r["hypothesis"] for r in rows], [r["reference"] for r in rows], detector)
            times[side].append((time.perf_counter() - t) * 1000)
    return {side: statistics.median(ts) for side, ts in times.items()}


if __name__ == "__main__":
    main()
