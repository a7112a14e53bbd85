"""A large push to the offline Hub (issue 27): wall time and peak RSS of the server and of the client.

    python bench/hub_push_bench.py                      # 1 GiB, the old inline path then the streamed LFS path
    python bench/hub_push_bench.py --size-mib 256 --only new

One folder holding a single safetensors file of ``--size-mib`` (one U8 tensor of random bytes) and a config is
pushed with ``hf_ptjf.hub.push_folder`` (in its own process, Xet left enabled as a user would have it) to
``python -m hf_ptjf.hub.server`` (in its own process):

* ``old``: the server started with ``--no-lfs``, which answers every preupload ``regular`` as before issue 27:
  the file travels base64-encoded inside the one commit body;
* ``new``: the default server: the file goes through the LFS batch API and one PUT, streamed to the blob store.

Printed per path: the push's wall time (measured inside the client, around ``push_folder``), the server's peak
RSS (VmHWM) when idle and after the push, the client's VmHWM before and after the push, and whether the file
downloaded back at the pushed sha has the local sha256. The old path needs ~10x the file size in RAM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from huggingface_hub.utils import httpx  # noqa: E402

from hf_ptjf.files import sha256_file  # noqa: E402
from hf_ptjf.hub import hub_endpoint_env  # noqa: E402

REPO = "test-user/bench-push"
MIB = 2**20

CLIENT = """
import json, sys, time
from hf_ptjf.hub import push_folder
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) * 1024
before = hwm()
start = time.perf_counter()
sha = push_folder(sys.argv[2], sys.argv[1], commit_message="bench", timeout=3600)
print(json.dumps({"sha": sha, "wall_s": time.perf_counter() - start, "before": before, "after": hwm()}))
"""


def peak_rss(pid: int) -> int:
    """VmHWM of process ``pid`` in bytes."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def write_folder(folder: Path, size: int) -> str:
    """A stage-like folder: one ``size``-byte U8 tensor in model.safetensors, and a config; the file's sha256."""
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for start in range(0, size, 16 * MIB):
            f.write(os.urandom(min(16 * MIB, size - start)))
    (folder / "config.json").write_text('{"model_type": "none"}')
    return sha256_file(folder / "model.safetensors")


def downloaded_sha256(url: str, sha: str) -> str:
    """sha256 of model.safetensors downloaded back at ``sha`` (streamed)."""
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{url}/{REPO}/resolve/{sha}/model.safetensors", timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def measure(path: str, folder: Path, want: str, work: Path) -> dict:
    """One push on the ``old`` or ``new`` path, servers and client in their own processes."""
    flags = ["--no-lfs"] if path == "old" else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "hf_ptjf.hub.server", "--root", str(work / f"hub-{path}"), "--port", "0", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        httpx.get(f"{url}/api/whoami-v2", headers={"Authorization": "Bearer x"})
        server_idle = peak_rss(server.pid)
        client_env = {**env, **hub_endpoint_env(url, disable_xet=False)}
        child = subprocess.run([sys.executable, "-c", CLIENT, REPO, str(folder)], env=client_env,
                               capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"{path}: the push failed:\n{child.stderr[-3000:]}")
        got = json.loads(child.stdout.strip().splitlines()[-1])
        got.update(path=path, server_idle=server_idle, server_peak=peak_rss(server.pid))
        got["round_trip"] = downloaded_sha256(url, got["sha"]) == want
        return got
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work / f"hub-{path}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the safetensors file (default 1 GiB)")
    parser.add_argument("--only", choices=["old", "new"], help="measure one path only")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hub_push_bench_"))
    size = args.size_mib * MIB
    want = write_folder(work / "stage", size)
    rows = [measure(p, work / "stage", want, work) for p in (["old", "new"] if args.only is None else [args.only])]
    print(f"push of one {size / MIB:,.0f} MiB safetensors file (+ config.json), push_folder -> python -m hf_ptjf.hub.server")
    print(f"{'path':<5} {'wall s':>7} {'server idle':>12} {'server peak':>12} {'client before':>14} "
          f"{'client peak':>12} {'round-trip':>10}")
    for r in rows:
        print(f"{r['path']:<5} {r['wall_s']:7.1f} {r['server_idle'] / MIB:8.0f} MiB {r['server_peak'] / MIB:8.0f} MiB "
              f"{r['before'] / MIB:10.0f} MiB {r['after'] / MIB:8.0f} MiB {'sha256 ok' if r['round_trip'] else 'DIFFERS':>10}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
