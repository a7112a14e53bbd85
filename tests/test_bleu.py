"""BLEU in a finished run is sacreBLEU's corpus BLEU of the hypotheses it wrote beside their references
(``samples_<task>.jsonl``, the first ``eval.bleu_examples`` validation examples), for a decoder-only run and for a
run whose checkpoint marks languages with codes (mBART-50, NLLB-200), whose every generation starts with the
target code. The tiny recipes run longer here (600 steps, up to 32 new tokens): after their usual 40 steps and 12 tokens
the tiny models generate blank or very short hypotheses, whose BLEU rounds to 0 whatever was scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sacrebleu

from .distributed import ROOT
from .fixtures.recipe_runs import run_cli
from .test_pretrained import code_overrides, coded  # noqa: F401  (the language-code checkpoints, a fixture)

RECIPES = ROOT / "tests" / "recipes"
LONGER = ["method_args.total_steps=600", "method_args.first_stage_steps=400", "eval_steps=200", "eval.max_new_tokens=32"]


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


@pytest.fixture(scope="module", params=["tiny_ptjf.yaml", "tiny_causal_ptjf.yaml"], ids=["seq2seq", "causal"])
def tagged_run(request, tmp_path_factory, tokenizer):
    """The tiny recipe (tasks marked by <2xx> tags), encoder-decoder and decoder-only."""
    out = tmp_path_factory.mktemp("bleu-" + request.param.removesuffix(".yaml")) / "run"
    code, err = run_cli([RECIPES / request.param, f"output_dir={out}", f"tokenizer.path={tokenizer}", *LONGER])
    assert code == 0, err
    return out


@pytest.mark.slow
def test_bleu_is_sacrebleu_of_the_samples(tagged_run):
    assert_bleu_is_sacrebleu_of_the_samples(tagged_run)
    rows = samples(tagged_run, "1-joint", "en-ro")
    assert set(rows[0]) == {"source", "reference", "hypothesis"}  # no language code forced: no first_token


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
    for stage in ("0-pretrain", "1-joint"):
        for task, (_, target) in codes.items():
            rows = samples(out, stage, task)
            # what generation produced first, after the decoder start (the hypothesis skips special tokens)
            assert [r["first_token"] for r in rows] == [target] * len(rows), (stage, task)
            assert not any(r["hypothesis"].startswith(target) for r in rows)
