"""Run the tiny PTJF recipe under `accelerate launch` (2 processes, DeepSpeed ZeRO-3 on CPU) with probes.

Usage: zero3_recipe.py OUT_DIR [RECIPE] (default: tests/recipes/tiny_ptjf.yaml). Writes OUT_DIR/probe.json and OUT_DIR/loaded.safetensors (rank 0):
the weights stage 2 was initialised with (gathered from the ZeRO-3 partitions), and, per stage, the
optimizer step count and learning rate right after the first optimizer step.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hf_ptjf.runner import loop as runner_module  # noqa: E402
from hf_ptjf.recipe import load_recipe  # noqa: E402
from hf_ptjf.train import MixtureTrainer  # noqa: E402

OUT = Path(sys.argv[1])
RECIPE = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests" / "recipes" / "tiny_ptjf.yaml"
probe: dict = {"stages": {}}


def innermost_optimizer(opt):
    """Unwrap accelerate / DeepSpeed wrappers down to the torch optimizer that holds the state."""
    while hasattr(opt, "optimizer") and opt.optimizer is not opt:
        opt = opt.optimizer
    return opt


class FirstStepProbe(TrainerCallback):
    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if state.global_step == 1:
            inner = innermost_optimizer(optimizer)
            steps = [float(s["step"]) for s in inner.state.values() if "step" in s]
            probe["stages"][Path(args.output_dir).name] = {
                "optimizer": type(inner).__name__,
                "max_optimizer_step": max(steps) if steps else None,
                "lr_after_first_step": lr_scheduler.get_last_lr()[0],
                "global_step": state.global_step,
            }


original_trainer_init = MixtureTrainer.__init__


def trainer_init(self, *args, **kwargs):
    original_trainer_init(self, *args, **kwargs)
    self.add_callback(FirstStepProbe())


MixtureTrainer.__init__ = trainer_init
original_init_model = runner_module.RecipeRunner._init_model


def init_model(self, index, stage):
    model = original_init_model(self, index, stage)
    if index == 1:
        import deepspeed
        from safetensors.torch import save_file

        params = list(model.parameters())
        probe["zero3_partitioned_at_load"] = all(hasattr(p, "ds_id") for p in params)
        probe["init"] = {"repo": self.handoff.outputs[self.cfg.stages[0].name]["repo"],
                         "sha": self.handoff.outputs[self.cfg.stages[0].name]["sha"]}
        with deepspeed.zero.GatheredParameters(params):
            if self.state.is_main_process:
                save_file({n: p.detach().clone().contiguous() for n, p in model.named_parameters()},
                          str(OUT / "loaded.safetensors"))
    return model


runner_module.RecipeRunner._init_model = init_model

config = load_recipe(
    RECIPE,
    [f"output_dir={OUT / 'run'}", "hub.mode=local", "per_device_train_batch_size=4", "report_to=[tensorboard]"],
)
runner_module.run_recipe(config)
import accelerate  # noqa: E402

state = accelerate.PartialState()
if state.is_main_process:
    (OUT / "probe.json").write_text(json.dumps(probe, indent=2))
state.wait_for_everyone()
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
