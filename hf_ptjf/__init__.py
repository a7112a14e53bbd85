"""hf_ptjf: pre-training joint fine-tuning (PTJF) for imbalanced multi-task training with HF Trainer."""

from .mixing import RATE_STRATEGIES, cap_epochs, mixing_rates, plan, proportional, static, temperature, unimax

__version__ = "0.1.0"

__all__ = [
    "RATE_STRATEGIES",
    "cap_epochs",
    "mixing_rates",
    "plan",
    "proportional",
    "static",
    "temperature",
    "unimax",
]
