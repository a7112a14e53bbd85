"""Launch a script under `accelerate launch` on CPU from a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (so concurrent launches do not collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(config: str, script: str | Path, *args: str, timeout: int = 600,
                      check: bool = True) -> subprocess.CompletedProcess:
    """Run ``accelerate launch --config_file accelerate_configs/<config> script args``; raise with its output on
    failure (``check=False``: return it)."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if "zero" not in config:
        # DDP on CPU: the torchrun workers must be told to use the CPU. Not for DeepSpeed, which
        # accelerate silently disables when ACCELERATE_USE_CPU is set.
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" / config),
           "--main_process_port", str(free_port()), str(script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
