"""BLEU in a finished run is sacreBLEU's corpus BLEU of the hypotheses it wrote beside their references
(``samples_<task>.jsonl``, the first ``eval.bleu_examples`` validation examples), for a decoder-only run and for a
run whose checkpoint marks languages with codes (mBART-50, NLLB-200), whose every generation starts with the
target code; chrF++ is sacreBLEU's chrF with word order 2 of the same samples, and the off-target rate the share of
them that py3langid (restricted to the shipped Bible languages) does not detect as the task's target language. The tiny recipes run longer here (600 steps, up to 32 new tokens): after their usual 40 steps and 12 tokens
the tiny models generate blank or very short hypotheses, whose BLEU rounds to 0 whatever was scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from sacrebleu.metrics import CHRF

from hf_ptjf.data.versions import VERSIONS

from .distributed import ROOT
from .fixtures.recipe_runs import run_cli
from .test_pretrained import code_overrides, coded  # noqa: F401  (the language-code checkpoints, a fixture)

RECIPES = ROOT / "tests" / "recipes"
LONGER = ["method_args.total_steps=600", "method_args.first_stage_steps=400", "eval_steps=200", "eval.max_new_tokens=32"]
SAMPLE_KEYS = {"source", "reference", "hypothesis", "language", "off_target"}  # + first_token with language codes


def samples(out: Path, stage: str, task: str) -> list[dict[str, Any]]:
    path = out / "stages" / stage / f"samples_{task}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_bleu_is_sacrebleu_of_the_samples(out: Path) -> None:
    """Every stage's ``eval_<task>_bleu`` (and results.json's per-task BLEU, the last stage's) equals
    ``sacrebleu.corpus_bleu`` recomputed from that stage's samples, rounded as the run rounds it (2 decimals);
    the samples are ``eval.bleu_examples`` rows with source, reference and hypothesis."""
    results = json.loads((out / "results.json").read_text())
    wanted = json.loads((out / "recipe.resolved.json").read_text())["eval"]["bleu_examples"]
    scores = []
    for stage in results["stages"]:
        stage_dir = f"{stage['index']}-{stage['name']}"
        for task in results["tasks"]:
            rows = samples(out, stage_dir, task)
            assert len(rows) == wanted, (stage_dir, task)  # not every validation example: eval.bleu_examples
            assert all(r["source"] and r["reference"] for r in rows)
            bleu = sacrebleu.corpus_bleu([r["hypothesis"] for r in rows], [[r["reference"] for r in rows]])
            assert stage["metrics"][f"eval_{task}_bleu"] == round(bleu.score, 2), (stage_dir, task)
            scores.append(bleu.score)
    last = results["stages"][-1]["metrics"]
    assert {t: v["bleu"] for t, v in results["tasks"].items()} == {t: last[f"eval_{t}_bleu"] for t in results["tasks"]}
    assert any(s > 0 for s in scores)  # not only empty or unrelated hypotheses: the comparison can tell them apart


def assert_chrf_and_off_target_are_those_of_the_samples(out: Path) -> None:
    """Every stage's ``eval_<task>_chrf`` is ``CHRF(word_order=2)`` of its samples and ``eval_<task>_off_target`` the
    share of them that py3langid, restricted to the shipped Bible languages, does not detect as the task's ``lang``
    (a hypothesis without a letter is in no language); each sample row carries that verdict; results.json has the
    last stage's."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(sorted({v.lang for v in VERSIONS}))
    results = json.loads((out / "results.json").read_text())
    lang = {t["name"]: t.get("lang") for t in json.loads((out / "recipe.resolved.json").read_text())["tasks"]}
    for stage in results["stages"]:
        stage_dir = f"{stage['index']}-{stage['name']}"
        for task in results["tasks"]:
            rows = samples(out, stage_dir, task)
            hyps = [r["hypothesis"] for r in rows]
            chrf = CHRF(word_order=2).corpus_score(hyps, [[r["reference"] for r in rows]]).score
            assert stage["metrics"][f"eval_{task}_chrf"] == round(chrf, 2), (stage_dir, task)
            detected = [identifier.classify(h)[0] if any(c.isalpha() for c in h) else None for h in hyps]
            assert [r["language"] for r in rows] == detected, (stage_dir, task)
            assert [r["off_target"] for r in rows] == [d != lang[task] for d in detected], (stage_dir, task)
            rate = sum(d != lang[task] for d in detected) / len(rows)
            assert stage["metrics"][f"eval_{task}_off_target"] == round(rate, 4), (stage_dir, task)
    last = results["stages"][-1]["metrics"]
    for key in ("chrf", "off_target"):
        assert {t: v[key] for t, v in results["tasks"].items()} == {t: last[f"eval_{t}_{key}"] for t in results["tasks"]}


@pytest.fixture(scope="module", params=["tiny_ptjf.yaml", "tiny_causal_ptjf.yaml"], ids=["seq2seq", "causal"])
def tagged_run(request, tmp_path_factory, tokenizer):
    """The tiny recipe (tasks marked by <2xx> tags), encoder-decoder and decoder-only."""
    out = tmp_path_factory.mktemp("bleu-" + request.param.removesuffix(".yaml")) / "run"
    code, err = run_cli([RECIPES / request.param, f"output_dir={out}", f"tokenizer.path={tokenizer}", *LONGER,
                         "report_to=[tensorboard]"])
    assert code == 0, err
    return out


@pytest.mark.slow
def test_bleu_is_sacrebleu_of_the_samples(tagged_run):
    assert_bleu_is_sacrebleu_of_the_samples(tagged_run)
    rows = samples(tagged_run, "1-joint", "en-ro")
    assert set(rows[0]) == SAMPLE_KEYS  # no language code forced: no first_token


@pytest.mark.slow
def test_chrf_and_off_target_are_those_of_the_samples_and_in_tensorboard(tagged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert_chrf_and_off_target_are_those_of_the_samples(tagged_run)
    acc = EventAccumulator(str(tagged_run / "tensorboard"))
    acc.Reload()
    scalars = {tag: [(e.step, round(e.value, 4)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    results = json.loads((tagged_run / "results.json").read_text())
    for task in results["tasks"]:
        for key in ("chrf", "off_target"):  # at the end of each stage (400, 600), the stage's own number
            assert scalars[f"eval/{task}_{key}"] == [
                (400 + 200 * i, round(s["metrics"][f"eval_{task}_{key}"], 4)) for i, s in enumerate(results["stages"])]


@pytest.fixture(scope="module")
def coded_run(tmp_path_factory, coded):  # noqa: F811
    folder, codes = coded
    out = tmp_path_factory.mktemp(f"bleu-{folder.parent.name}") / "run"
    code, err = run_cli([RECIPES / "tiny_ptjf.yaml", f"output_dir={out}", f"model={{name_or_path: {folder}}}",
                         f"tokenizer.path={folder}", *code_overrides(codes), *LONGER])
    assert code == 0, err
    return out, codes


@pytest.mark.slow
@pytest.mark.parametrize("coded", ["mbart50", "nllb"], indirect=True)  # their code tokens are spelled as the codes
def test_language_code_bleu_is_sacrebleu_of_its_samples_and_each_starts_with_the_target_code(coded_run):
    out, codes = coded_run
    assert_bleu_is_sacrebleu_of_the_samples(out)
    assert_chrf_and_off_target_are_those_of_the_samples(out)  # the target: the language of the code (fr_XX: fr)
    for stage in ("0-pretrain", "1-joint"):
        for task, (_, target) in codes.items():
            rows = samples(out, stage, task)
            # what generation produced first, after the decoder start (the hypothesis skips special tokens)
            assert [r["first_token"] for r in rows] == [target] * len(rows), (stage, task)
            assert not any(r["hypothesis"].startswith(target) for r in rows)
