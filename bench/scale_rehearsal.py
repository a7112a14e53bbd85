"""The 13B path rehearsed on CPU (issue 27): one recipe under 2-process ZeRO-3, memory and wall time per phase.

    python bench/scale_rehearsal.py recipes/configs/scale_llama_0p5b.yaml --out scale_llama.json
    python bench/scale_rehearsal.py recipes/configs/scale_t5_0p5b.yaml --out scale_t5.json
    python bench/scale_rehearsal.py recipes/configs/scale_llama_0p5b.yaml model.d_model=512 ...   # any override

What it does:

* starts the offline Hub (``python -m hf_ptjf.hub.server``) in its own process, so that its memory is its own, and
  samples its RSS every 0.1 s;
* runs the recipe with ``accelerate launch`` (``--accelerate-config``, default ``cpu_zero3_2proc_ram.yaml``) with
  ``HF_PTJF_PHASE_LOG`` set: each rank records, per stage and phase (``load``: construction or load at the pinned
  sha, ``train``, ``evaluate``: loss + generate, ``save``: the consolidated shards, ``push``), its wall time and the
  kernel's peak RSS of that phase (VmHWM reset at the phase's start: exact, not sampled);
* checks the outputs: every pushed file's sha256 against the local consolidated output, every tensor of the shards
  downloaded at the pinned sha against the local ones, and ``from_pretrained`` (one process, no ZeRO) of the pinned
  sha against the local tensors;
* puts the planner's prediction (:func:`hf_ptjf.memory.plan_cpu_zero3_phases`) beside each measured peak.

Writes one JSON (``--out``) and prints the table. :func:`rehearse` is the same for tests (``tests/test_scale.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from hf_ptjf.files import sha256_file  # noqa: E402
from hf_ptjf.hub import hub_endpoint_env, use_endpoint  # noqa: E402
from hf_ptjf.memory import plan_recipe_phases  # noqa: E402
from hf_ptjf.runner.phases import PHASE_LOG_ENV, memory_status  # noqa: E402
from hf_ptjf.shards import checkpoint_files  # noqa: E402

MIB = 2**20
DEFAULT_CONFIG = "accelerate_configs/cpu_zero3_2proc_ram.yaml"


class Sampler(threading.Thread):
    """RSS of one process every ``every`` seconds: ``[(time, rss_kib), ...]``."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss = memory_status(self.pid).get("VmRSS")
            if rss is not None:
                self.samples.append((time.time(), rss))
            self.done.wait(self.every)

    def peak_between(self, start: float, end: float) -> int | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else None


def start_server(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "hf_ptjf.hub.server", "--root", str(root), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    return server, server.stdout.readline().strip()


def launch(recipe: str, overrides: Sequence[str], config: str, env: dict[str, str], log: Path, timeout: int) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / config),
           str(ROOT / "recipes" / "run.py"), recipe, *overrides]
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text()[-6000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); the log's end:\n{tail}")


def compare_tensors(local: Path, other: Path) -> dict[str, Any]:
    """Every tensor of checkpoint folder ``other`` against ``local`` (one shard open at a time): equal bit for bit?"""
    files = {f.name: f for f in checkpoint_files(local)}
    theirs = {f.name: f for f in checkpoint_files(other)}
    differ, count = [], 0
    for name, path in files.items():
        with safe_open(str(path), "pt") as a, safe_open(str(theirs[name]), "pt") as b:
            if set(a.keys()) != set(b.keys()):
                differ.append(f"{name}: other tensor names")
                continue
            for key in a.keys():
                count += 1
                if not torch.equal(a.get_tensor(key), b.get_tensor(key)):
                    differ.append(key)
    return {"tensors": count, "differ": differ, "same_files": sorted(files) == sorted(theirs)}


def check_stage(stage: dict[str, Any], cache: Path, env: dict[str, str]) -> dict[str, Any]:
    """The pushed files and tensors of one stage against its local consolidated output."""
    from huggingface_hub import HfApi, snapshot_download  # (reads HF_ENDPOINT when imported: env is set first)

    local = Path(stage["output_dir"])
    info = HfApi(endpoint=env["HF_ENDPOINT"]).repo_info(stage["hub_repo"], revision=stage["hub_sha"],
                                                        files_metadata=True)
    shards = sorted(p.name for p in local.glob("*.safetensors"))
    sums = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs is not None}
    checksums = {name: sums.get(name) == sha256_file(local / name) for name in shards}
    folder = Path(snapshot_download(stage["hub_repo"], revision=stage["hub_sha"], cache_dir=str(cache),
                                    endpoint=env["HF_ENDPOINT"]))
    out = {"shards": shards, "shard_bytes": [(local / s).stat().st_size for s in shards],
           "pushed_sha256_equal": checksums, "downloaded": compare_tensors(local, folder)}
    out["from_pretrained"] = from_pretrained_equal(folder, local)
    return out


def from_pretrained_equal(folder: Path, local: Path) -> dict[str, Any]:
    """``from_pretrained`` of the downloaded folder (one process, no ZeRO): every tensor equal to the local shards?"""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(folder)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_pretrained(folder, use_safetensors=True)
    state = model.state_dict()
    differ, count = [], 0
    for path in checkpoint_files(local):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                count += 1
                if key not in state or not torch.equal(state[key], f.get_tensor(key)):
                    differ.append(key)
    del model, state
    return {"tensors": count, "differ": differ}


def phase_table(rows: list[dict[str, Any]], server: Sampler) -> list[dict[str, Any]]:
    """One row per (stage, phase): each rank's peak and wall, and the Hub server's sampled peak in that window."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault((row["stage"], row["phase"]), {"stage": row["stage"], "phase": row["phase"]})
        entry[f"rank{row['rank']}_peak_mib"] = round(row["peak_kib"] / 1024, 1)
        entry[f"rank{row['rank']}_start_mib"] = round(row["rss_before_kib"] / 1024, 1)
        entry[f"rank{row['rank']}_wall_s"] = row["wall_s"]
        start, end = min(entry.get("t_start", row["t_start"]), row["t_start"]), max(entry.get("t_end", 0), row["t_end"])
        entry.update(t_start=start, t_end=end)
    for entry in table.values():
        entry["server_peak_mib"] = round((server.peak_between(entry["t_start"], entry["t_end"]) or 0) / 1024, 1)
    return list(table.values())


def rehearse(recipe: str, overrides: Sequence[str] = (), *, config: str = DEFAULT_CONFIG, work: Path | None = None,
             timeout: int = 7200, check_outputs: bool = True) -> dict[str, Any]:
    """Run ``recipe`` (+ ``overrides``) under ``config`` with the phases recorded; the measurements as a dict."""
    work = Path(work or tempfile.mkdtemp(prefix="scale_rehearsal_"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "phases.jsonl"
    log.unlink(missing_ok=True)
    base = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    server, url = start_server(work / "hub", base)
    sampler = Sampler(server.pid)
    sampler.start()
    env = {**base, **hub_endpoint_env(url), "DS_ACCELERATOR": "cpu", PHASE_LOG_ENV: str(log),
           "HF_HUB_CACHE": str(work / "hf-cache"), "HF_TOKEN": "scale-rehearsal"}
    overrides = [f"output_dir={work / 'run'}", *overrides]
    start = time.time()
    try:
        launch(recipe, overrides, config, env, work / "launch.log", timeout)
        wall = time.time() - start
        results = json.loads((work / "run" / "results.json").read_text())
        with use_endpoint(url):  # (online, at the server, whatever this process's huggingface_hub read at import)
            checks = {s["name"]: check_stage(s, work / "check-cache", env) for s in results["stages"]} \
                if check_outputs else {}
    finally:
        sampler.done.set()
        server.terminate()
        server.wait(timeout=60)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    plan = plan_recipe_phases(recipe, overrides, ROOT / config)
    return {"recipe": recipe, "overrides": list(overrides), "accelerate_config": config, "wall_s": round(wall, 1),
            "parameters": results["stages"][0].get("parameters"), "server_idle_mib": round(sampler.samples[0][1] / 1024, 1),
            "server_peak_mib": round(max(r for _, r in sampler.samples) / 1024, 1),
            "phases": phase_table(rows, sampler), "plan": plan, "checks": checks,
            "metrics": {s["name"]: s.get("metrics") for s in results["stages"]}, "work": str(work)}


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['recipe']} {' '.join(result['overrides'][1:])}: {result['parameters'] / 1e6:.1f}M parameters, "
          f"{result['wall_s']:.0f} s")
    print(f"{'stage':<10}{'phase':<10}{'rank0 MiB':>10}{'plan':>8}{'err':>6}{'rank1 MiB':>10}{'plan':>8}{'err':>6}"
          f"{'wall s':>8}{'server MiB':>11}")
    for row in result["phases"]:
        cells = []
        for rank in (0, 1):
            got = row.get(f"rank{rank}_peak_mib")
            want = result["plan"].get(row["phase"] if row["phase"] != "load" or row["stage"] == "pretrain"
                                      else "load_pinned", {}).get(f"rank{rank}_mib")
            err = f"{100 * (want - got) / got:+.0f}%" if got and want else "-"
            cells += [f"{got or 0:>10.0f}", f"{want or 0:>8.0f}", f"{err:>6}"]
        print(f"{row['stage']:<10}{row['phase']:<10}{''.join(cells)}{row.get('rank0_wall_s', 0):>8.1f}"
              f"{row['server_peak_mib']:>11.0f}")
    for name, check in result["checks"].items():
        print(f"{name}: shards {check['shards']} {[round(b / MIB) for b in check['shard_bytes']]} MiB; pushed sha256 "
              f"equal: {all(check['pushed_sha256_equal'].values())}; downloaded tensors equal: "
              f"{not check['downloaded']['differ']} ({check['downloaded']['tensors']}); from_pretrained equal: "
              f"{not check['from_pretrained']['differ']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--accelerate-config", default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, required=True, help="the measurements, as JSON")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    result = rehearse(args.recipe, args.overrides, config=args.accelerate_config, work=args.work)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    if not args.keep and args.work is None:
        shutil.rmtree(result["work"], ignore_errors=True)


if __name__ == "__main__":
    main()
