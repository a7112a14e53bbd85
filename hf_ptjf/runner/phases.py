"""Per-phase memory and wall time of a stage, for the scale rehearsal (``bench/scale_rehearsal.py``, docs/scale.md).

With ``HF_PTJF_PHASE_LOG=/path/phases.jsonl`` set, each phase of a stage (``load``, ``train``, ``evaluate``, ``save``,
``push``) appends one JSON line per process: rank, stage, phase, wall seconds (and the epoch times of its start and end), RSS before and after and the peak RSS
*of that phase*. The peak is the kernel's VmHWM, reset at the phase's start (``/proc/self/clear_refs`` = 5, Linux),
so it is exact, not sampled. Unset (the default), :func:`phase` does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Iterator

__all__ = ["PHASE_LOG_ENV", "memory_status", "phase", "reset_peak"]

PHASE_LOG_ENV = "HF_PTJF_PHASE_LOG"


def memory_status(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process in KiB, from ``/proc/<pid>/status`` (empty off Linux)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def reset_peak(pid: int | str = "self") -> bool:
    """Reset a process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def phase(name: str, stage: str) -> Iterator[None]:
    """Record phase ``name`` of ``stage`` to the file named by ``HF_PTJF_PHASE_LOG`` (nothing when it is unset)."""
    path = os.environ.get(PHASE_LOG_ENV)
    if not path:
        yield
        return
    reset_peak()
    before = memory_status().get("VmRSS")
    start = time.time()
    try:
        yield
    finally:
        now = memory_status()
        row = {"rank": int(os.environ.get("RANK", "0")), "stage": stage, "phase": name,
               "wall_s": round(time.time() - start, 2), "t_start": start, "t_end": time.time(), "rss_before_kib": before, "rss_after_kib": now.get("VmRSS"),
               "peak_kib": now.get("VmHWM")}
        with open(path, "a") as f:  # (one short line per write: the ranks' lines do not interleave)
            f.write(json.dumps(row) + "\n")
