"""The shipped sacrebleu module: same numbers as sacrebleu, loads by path with no Hub access."""

import configparser
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import sacrebleu

from hf_ptjf.metrics import compute_bleu, load_bleu

REPO = Path(__file__).resolve().parents[1]
KEYS = {"score", "counts", "totals", "precisions", "bp", "sys_len", "ref_len"}

CASES = {
    "single-ref": (
        ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog"],
        [["the cat sat on the mat"], ["the quick brown fox jumped over the lazy dog"]],
    ),
    "multi-ref": (
        ["hello there general kenobi", "foo bar foobar", "it is raining today"],
        [
            ["hello there general kenobi", "hello there !"],
            ["foo bar foobar", "foo bar baz"],
            ["it rains today", "today it is raining"],
        ],
    ),
    "empty-prediction": (
        ["", "the house is small", "das ist gut"],
        [["there is something here"], ["the house is very small"], ["das ist sehr gut"]],
    ),
    "punctuation-and-case": (
        ["Hello, World! How are you?", "It's 5 o'clock."],
        [["hello world, how are you?"], ["It is 5 o'clock."]],
    ),
}


def _streams(references):
    """Per-segment references -> sacrebleu reference streams."""
    return [list(s) for s in zip(*references)]


@pytest.fixture(scope="module")
def bleu():
    return load_bleu(keep_in_memory=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_sacrebleu(bleu, case):
    preds, refs = CASES[case]
    expected = sacrebleu.corpus_bleu(preds, _streams(refs))
    for out in (bleu.compute(predictions=preds, references=refs), compute_bleu(preds, refs)):
        assert set(out) == KEYS
        assert out["score"] == pytest.approx(expected.score, abs=1e-9)
        assert out["counts"] == expected.counts and out["totals"] == expected.totals
        assert out["precisions"] == pytest.approx(expected.precisions)
        assert out["bp"] == pytest.approx(expected.bp)
        assert (out["sys_len"], out["ref_len"]) == (expected.sys_len, expected.ref_len)


def test_kwargs_are_forwarded():
    preds, refs = CASES["punctuation-and-case"]
    for kwargs in ({"lowercase": True}, {"tokenize": "char"}, {"smooth_method": "floor", "smooth_value": 0.1}):
        expected = sacrebleu.corpus_bleu(preds, _streams(refs), **kwargs).score
        assert compute_bleu(preds, refs, **kwargs)["score"] == pytest.approx(expected)
    assert compute_bleu(preds, refs, lowercase=True)["score"] != compute_bleu(preds, refs)["score"]


def test_flat_and_ragged_references():
    preds = ["the cat sat", "a dog ran home"]
    flat = ["the cat sat down", "a dog ran home"]
    assert compute_bleu(preds, flat)["score"] == pytest.approx(sacrebleu.corpus_bleu(preds, [flat]).score)
    # ragged: padded with None, which sacrebleu skips
    ragged = [["the cat sat down", "the cat sat"], ["a dog ran home"]]
    expected = sacrebleu.corpus_bleu(preds, [["the cat sat down", "a dog ran home"], ["the cat sat", None]])
    assert compute_bleu(preds, ragged)["score"] == pytest.approx(expected.score)


@pytest.mark.parametrize(
    "preds, refs, match",
    [
        (["a"], [["a"], ["b"]], "same length"),
        ([], [], "empty"),
        ("a b c", [["a b c"]], "list of strings"),
        ([1, 2], [["a"], ["b"]], "list of strings"),
        (["a"], "a", "single string"),
        (["a"], [[3]], "contain strings"),
    ],
)
def test_bad_input_raises(preds, refs, match):
    with pytest.raises(ValueError, match=match):
        compute_bleu(preds, refs)


def test_script_ships_inside_the_package():
    script = resources.files("hf_ptjf.metrics").joinpath("sacrebleu", "sacrebleu.py")
    assert script.is_file()
    # setup.cfg's package_data glob must match it, or wheels would ship without it
    setup_cfg = REPO / "setup.cfg"
    if not setup_cfg.is_file():
        pytest.skip("no setup.cfg in this checkout")
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    globs = cfg.get("options.package_data", "hf_ptjf", fallback="").split()
    assert any(Path("metrics/sacrebleu/sacrebleu.py").match(g) for g in globs)


def test_loads_offline_with_network_blocked(monkeypatch):
    """HF_HUB_OFFLINE=1 and any socket use is an error: loading by path must not touch the network."""
    import huggingface_hub.constants
    import socket

    import evaluate.config

    # the env var is read at import time, so also flip the already-imported flags
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    preds, refs = CASES["multi-ref"]
    out = load_bleu().compute(predictions=preds, references=refs)
    assert out["score"] == pytest.approx(sacrebleu.corpus_bleu(preds, _streams(refs)).score)


_CHILD = """
import json, sacrebleu
from hf_ptjf.metrics import _script, compute_bleu, load_bleu
preds, refs = ["the cat sat on the mat", ""], [["the cat sat on a mat", "a cat sat"], ["nothing"]]
streams = [["the cat sat on a mat", "nothing"], ["a cat sat", None]]
print(json.dumps({
    "score": load_bleu().compute(predictions=preds, references=refs)["score"],
    "helper": compute_bleu(preds, refs)["score"],
    "expected": sacrebleu.corpus_bleu(preds, streams).score,
    "script": str(_script("sacrebleu")),
}))
"""


@pytest.mark.slow  # a second interpreter pays `import evaluate` (~5 s)
def test_loads_with_dead_hub_endpoint_in_fresh_interpreter(tmp_path):
    """Not flagged offline, HF_ENDPOINT on a closed port, empty caches, cwd outside the repo.

    A fresh interpreter because evaluate/huggingface_hub read HF_* variables at import.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HOME=str(tmp_path / "hf"),
        HF_MODULES_CACHE=str(tmp_path / "modules"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["score"] == pytest.approx(out["expected"]) and out["helper"] == pytest.approx(out["expected"])
    # loaded from inside the hf_ptjf package, not from the working directory
    assert Path(out["script"]).resolve().is_relative_to((REPO / "hf_ptjf" / "metrics").resolve())
