"""Security: safetensors-only weights, no remote code unless opted in, `torch.load(weights_only=True)`,
and an HF token never written to logs, saved configs, results, checkpoints or model cards."""

from __future__ import annotations

import ast
import pickle
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch

from .hub_faults import FaultyHubServer
from hf_ptjf.recipe import load_recipe

from hf_ptjf.hub.server import hub_endpoint_env

from .fixtures.recipe_runs import (
    ROOT,
    TINY,
    TWO_STAGES,
    child_env,
    error_line,
    run_cli,
    run_process,
    tiny_args,
    write_recipe,
)
from .toy import tiny_t5

FAKE_TOKEN = "hf_FAKEtokenFAKEtokenFAKEtoken123456"  # hf_ + 34 alphanumerics, like a real one


class _Payload:
    """A pickle that creates a file when unpickled: proof that a .bin checkpoint was (not) loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickled_checkpoint(folder: Path) -> Path:
    tiny_t5().config.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(folder / "PWNED")))
    return folder


def test_pickled_weights_are_never_loaded(tmp_path, tokenizer):
    from hf_ptjf.modeling import ModelArguments, build_model

    folder = pickled_checkpoint(tmp_path / "pickled")
    with pytest.raises(OSError, match="model.safetensors"):
        build_model(ModelArguments(name_or_path=str(folder)))
    # through the runner: a stage initialised from it is a clear error, and the pickle never ran
    stages = [{"name": "finetune", "max_steps": 2, "init": {"path": str(folder)}}]
    recipe = write_recipe(tmp_path / "recipe.yaml", method=None, method_args=None, stages=stages)
    code, err = run_cli([recipe, f"output_dir={tmp_path / 'run'}", f"tokenizer.path={tokenizer}"])
    assert code == 2
    line = error_line(err)
    assert "`stages.0.init`" in line and "safetensors only" in line
    assert not (folder / "PWNED").exists()


def test_from_pretrained_gets_safetensors_and_no_remote_code_unless_opted_in(tmp_path, monkeypatch):
    import hf_ptjf.modeling as modeling
    from hf_ptjf.runner import RecipeRunner

    calls: list[dict] = []

    def fake_from_pretrained(name, **kw):
        calls.append(kw)
        return tiny_t5()

    def fake_config(name, **kw):  # the config is read first (encoder-decoder or causal?): the same opt-in applies
        calls.append({**kw, "use_safetensors": True, "config": True})
        return tiny_t5().config

    monkeypatch.setattr(modeling.AutoModelForSeq2SeqLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(modeling.AutoConfig, "from_pretrained", fake_config)
    stages = [{"name": "finetune", "max_steps": 2, "init": {"path": str(tmp_path)}},
              {**TWO_STAGES[1], "init": {"hub": "someone/model", "revision": None}}]
    recipe = write_recipe(tmp_path / "recipe.yaml", method=None, method_args=None, stages=stages)
    for opt_in, overrides in ((False, []), (False, ["model.trust_remote_code=false"]),
                              (True, ["model.trust_remote_code=true"])):
        calls.clear()
        runner = RecipeRunner(load_recipe(recipe, [f"output_dir={tmp_path / 'run'}", *overrides]))
        runner.data = SimpleNamespace(tokenizer=None, added_tokens=[])  # no data needed to load weights
        for index, stage in enumerate(runner.cfg.stages):
            runner._init_model(index, stage)
        assert len(calls) == 4 and sum("config" in kw for kw in calls) == 2
        assert all(kw["use_safetensors"] is True and kw["trust_remote_code"] is opt_in for kw in calls), calls


def _calls(tree: ast.AST, module: str, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
            if isinstance(node.func.value, ast.Name) and node.func.value.id == module:
                yield node


def test_no_unsafe_deserialisation_in_the_package():
    files = [*(ROOT / "hf_ptjf").rglob("*.py"), *(ROOT / "recipes").rglob("*.py")]
    assert files
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _calls(tree, "torch", "load"):
            kw = {k.arg: k.value for k in call.keywords}
            ok = "weights_only" in kw and isinstance(kw["weights_only"], ast.Constant) and kw["weights_only"].value is True
            assert ok, f"{path}:{call.lineno}: torch.load without weights_only=True"
        for name in ("load", "loads"):
            for mod in ("pickle", "dill", "cloudpickle", "joblib"):
                assert not list(_calls(tree, mod, name)), f"{path}: {mod}.{name}"
        assert not list(_calls(tree, "yaml", "unsafe_load")), path
        for call in _calls(tree, "yaml", "load"):  # only safe loaders
            loader = {k.arg: k.value for k in call.keywords}.get("Loader")
            assert loader is not None and "Unsafe" not in ast.unparse(loader) and ast.unparse(loader) != "yaml.Loader", (
                f"{path}:{call.lineno}")


def _toy_trainer(out: Path, max_steps: int):
    from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

    from .toy import collate, toy_mixture

    train, _ = toy_mixture()
    args = MixtureTrainingArguments(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8,
                                    save_steps=2, report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    return MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)


def test_resuming_a_checkpoint_uses_weights_only_torch_load(tmp_path, monkeypatch):
    _toy_trainer(tmp_path, 4).train()
    seen: list[dict] = []
    load = torch.load

    def recording_load(*args, **kwargs):
        seen.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    resumed = _toy_trainer(tmp_path / "resumed", 6)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert len(seen) >= 3  # optimizer, scheduler, RNG state (weights come from safetensors)
    assert all(kw.get("weights_only") is True for kw in seen), seen


def test_a_token_in_the_recipe_is_refused_without_echoing_it(tmp_path):
    out = tmp_path / "run"
    for override in (f"hub_token={FAKE_TOKEN}", f"stages.0.training={{hub_token: {FAKE_TOKEN}}}"):
        args = [TINY, f"output_dir={out}", override]
        if override.startswith("stages"):
            recipe = write_recipe(tmp_path / "recipe.yaml", method=None, method_args=None, stages=TWO_STAGES)
            args = [recipe, f"output_dir={out}", override]
        code, err = run_cli(args)
        assert code == 2
        line = error_line(err)
        assert "hub_token" in line and "HF_TOKEN" in line and FAKE_TOKEN not in err and FAKE_TOKEN[3:] not in err
    assert not out.exists()


@pytest.mark.slow
def test_the_hf_token_appears_in_no_output(tmp_path, tokenizer):
    """A full run pushing to a Hub that requires the token (with a retried 503): grep everything it wrote."""
    out, cache = tmp_path / "run", tmp_path / "hf_cache"
    with FaultyHubServer(tmp_path / "hub", require_token=FAKE_TOKEN) as server:
        server.faults.fail_next(1, status=503, path_contains="/commit/")  # a retry warning gets logged
        env = child_env(**hub_endpoint_env(server.url), HF_TOKEN=FAKE_TOKEN, HF_HUB_CACHE=str(cache))
        proc = run_process(tiny_args(out, tokenizer, "hub.mode=remote", "report_to=[tensorboard]",
                                     "hub.max_retries=2"), env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert server.count() > 0 and server.faults.pending == 0
        refused = [(r.method, r.path) for r in server.requests if r.status == 401 and "/api/agent-harnesses" not in r.path]
        assert refused == []  # the token was sent (and accepted) with every push / verify / download request
    written = [p for root in (out, tmp_path / "hub", cache) for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"recipe.resolved.json", "results.json", "report.md", "stage.json", "README.md", "training_args.bin",
            "trainer_state.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    secrets = [FAKE_TOKEN.encode(), FAKE_TOKEN[3:].encode()]
    leaks = [str(p) for p in written if any(s in p.read_bytes() for s in secrets)]
    assert not leaks
    assert "WARNING" in proc.stderr and "retrying" in proc.stderr  # the retry was logged...
    assert FAKE_TOKEN not in proc.stdout + proc.stderr and FAKE_TOKEN[3:] not in proc.stdout + proc.stderr  # ...cleanly
