"""``hf-ptjf plan RECIPE.yaml [key=value ...] --accelerate-config X.yaml`` (also ``hf-ptjf-plan``,
``python -m hf_ptjf.plan``): will the recipe's model fit under DeepSpeed ZeRO-3? (:mod:`hf_ptjf.memory`)"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from transformers import AutoConfig, PretrainedConfig

from ..errors import UserError
from ..memory import format_plan, plan_memory, plan_recipe_phases, read_accelerate_config
from ..modeling import ModelArguments, build_config
from ..recipe import read_recipe
from .policy import report_user_errors

__all__ = ["build_parser", "load_model_args", "main"]


def build_parser(prog: str = "hf-ptjf-plan") -> argparse.ArgumentParser:
    """``RECIPE [key=value ...] [--accelerate-config X] [--micro-batch-size B] ... [--strict]``."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Estimate per-GPU / CPU memory of a recipe's model under DeepSpeed ZeRO-3 (no memory used).",
    )
    p.add_argument("config", help="recipe YAML; its `model:` section holds ModelArguments fields")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the recipe, as for recipes/run.py")
    p.add_argument("--accelerate-config", help="accelerate YAML: GPU count, nodes and offload come from it")
    p.add_argument("--num-gpus-per-node", type=int, help="override / replace the accelerate config's GPUs per node")
    p.add_argument("--num-nodes", type=int, help="override / replace the accelerate config's machines")
    p.add_argument("--vocab-size", type=int, help="vocabulary size when the recipe's model section has none")
    p.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU (default 80)")
    p.add_argument("--cpu-memory-gib", type=float, help="host memory per node, to check offload needs")
    p.add_argument("--micro-batch-size", type=int, help="per-GPU batch, enables the activation estimate")
    p.add_argument("--source-length", type=int, default=512,
                   help="encoder tokens per example (decoder-only: prompt or packed-row tokens; default 512)")
    p.add_argument("--target-length", type=int, default=512,
                   help="decoder tokens per example (decoder-only: target tokens after the prompt, 0 for lm; default 512)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="activations with per-block recompute")
    p.add_argument("--attn-implementation", choices=["sdpa", "eager"], default="sdpa",
                   help="attention kernel assumed by the activation estimate (default sdpa)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when the plan does not fit")
    p.add_argument("--phases", action="store_true",
                   help="ZeRO-3 on CPU: peak RSS per process and phase of a stage (load, train, evaluate, save, push)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "hf-ptjf-plan") -> int:
    """Print :func:`~hf_ptjf.memory.format_plan`; exit status 1: does not fit with ``--strict``; 2: bad input, one
    ``error:`` line."""
    args = build_parser(prog).parse_intermixed_args(argv)  # options may come between the config and the overrides
    return report_user_errors(lambda: _plan(args))


def load_model_args(recipe: str | Path, overrides: Sequence[str] = ()) -> ModelArguments:
    """The recipe's ``model:`` section, read the way the runner reads it (:func:`hf_ptjf.recipe.read_recipe`)."""
    model = read_recipe(recipe, list(overrides)).get("model")
    if not isinstance(model, dict) or not model:
        raise UserError(f"{recipe}: needs a `model:` mapping of ModelArguments fields (d_model, num_layers, ...).")
    return ModelArguments.from_dict(model)


def _model_config(args: argparse.Namespace, margs: ModelArguments) -> tuple[Any, bool | None]:
    """The model's config and whether it ties its embeddings: a checkpoint's, or built from the recipe's sizes."""
    if margs.name_or_path is None:
        vocab = args.vocab_size if args.vocab_size is not None else margs.vocab_size
        if vocab is None:
            raise UserError(f"{args.config}: set model.vocab_size in the recipe or pass --vocab-size.")
        return build_config(margs, vocab_size=vocab), margs.tie_word_embeddings
    try:  # needs the checkpoint's config locally (path or HF cache); mT5-style configs say tie_word_embeddings: false
        config = AutoConfig.from_pretrained(margs.name_or_path, revision=margs.revision,
                                            trust_remote_code=margs.trust_remote_code)
        raw, _ = PretrainedConfig.get_config_dict(margs.name_or_path, revision=margs.revision)
    except OSError as e:  # not a folder, not in the cache, not on the Hub
        raise UserError(f"`model.name_or_path` {margs.name_or_path!r}: its config cannot be read ({e}); give a local "
                        "checkpoint folder or a Hub id that is cached.") from e
    return config, raw.get("tie_word_embeddings", True)


def _print_phases(args: argparse.Namespace) -> int:
    """``--phases``: :func:`~hf_ptjf.memory.plan_recipe_phases`, one line per phase."""
    if not args.accelerate_config:
        raise UserError("--phases needs --accelerate-config (e.g. accelerate_configs/cpu_zero3_2proc_ram.yaml).")
    plans = plan_recipe_phases(args.config, args.overrides, args.accelerate_config)
    print("peak RSS per process (ZeRO-3 on CPU, fp32), MiB:")
    print(f"  {'phase':<12}{'main':>8}{'others':>8}  terms")
    for phase, plan in plans.items():
        terms = ", ".join(f"{k} {v}" for k, v in plan["terms_mib"].items())
        print(f"  {phase:<12}{plan['rank0_mib']:>8}{plan['rank1_mib']:>8}  {terms}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    if args.phases:
        return _print_phases(args)
    config, tie = _model_config(args, load_model_args(args.config, args.overrides))
    gpus, nodes, off_opt, off_param = 1, 1, False, False
    notes = []
    if args.accelerate_config:
        setup = read_accelerate_config(args.accelerate_config)
        gpus, nodes = setup.num_gpus_per_node, setup.num_machines
        off_opt, off_param = setup.offload_optimizer, setup.offload_param
        if setup.distributed_type != "DEEPSPEED" or setup.zero_stage != 3:
            notes.append(f"{args.accelerate_config} is {setup.distributed_type} (ZeRO stage {setup.zero_stage}), "
                         "not ZeRO-3: the figures show what ZeRO-3 would need.")
    plan = plan_memory(
        config, args.num_gpus_per_node or gpus, args.num_nodes or nodes, args.gpu_memory_gib,
        offload_optimizer=off_opt, offload_param=off_param, tie_word_embeddings=tie,
        micro_batch_size=args.micro_batch_size, source_length=args.source_length, target_length=args.target_length,
        gradient_checkpointing=args.gradient_checkpointing, attn_implementation=args.attn_implementation,
        cpu_memory_gib=args.cpu_memory_gib,
    )
    plan.warnings.extend(notes)
    print(format_plan(plan))
    return 1 if args.strict and not plan.fits else 0
