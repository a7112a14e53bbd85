"""Streamed mixtures (issue 14), measured side by side in one run; prints ratios and curves.

    python bench/stream_bench.py --data /tmp/stream_corpus            # all three (writes ~5.3 GB once)
    python bench/stream_bench.py --data /tmp/stream_corpus --only 2 3

1. Memory: a generated multilingual corpus of >= 5 GB of JSON lines (3 tasks: 4.2 / 0.9 / 0.2 GB, 64 MB shards) is
   streamed through a 3-task LM mixture (temperature ``--tau`` on the files' sizes), tokenized (``--tokenizer``:
   byte-level BPE, or hashed words to push the whole corpus through cheaply) and packed on the fly, for ``--rows``
   rows: the process's RSS is sampled every 2,000 batches (25,000 beyond 4 M rows; the curve is printed). Against it, the map-style path's cost on the same data: ``load_dataset`` (Arrow cache)
   + the tokenizing ``map``, timed, with the disk they use (``--map-fraction`` of the shards, default all).
2. Speed: rows/s of ``MixtureStream`` vs ``datasets.interleave_datasets(..., probabilities=same,
   stopping_strategy="all_exhausted")`` over the same IterableDatasets of model-ready rows (token ids in Parquet
   shards), both batched by 8 in this process; best of 3, alternating.
3. Resume cost: a reader's state at stream positions 1e3, 1e5, 1e7 rows of a task in 100 Parquet shards of 100,000
   rows; time to build the resumed reader and get its first row, and a MixtureStream's first batch at that position
   (best of 3). Flat: at most one shard's skip.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import datasets  # noqa: E402

from hf_ptjf.data.stream import TaskStream  # noqa: E402
from hf_ptjf.mixture import temperature  # noqa: E402
from hf_ptjf.mixture.stream import MixtureStream  # noqa: E402

datasets.disable_progress_bars()

# task -> (GB of JSON lines, alphabet): a Latin, a Devanagari and a Gaelic-like Latin task
TASKS = {"en": (4.2, "abcdefghijklmnopqrstuvwxyz"), "hi": (0.9, "".join(map(chr, range(0x915, 0x939)))),
         "gd": (0.2, "abcdeghilmnorstuàèìòù")}
SHARD_BYTES = 64 << 20


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    """User + system CPU seconds of this process (less sensitive than wall time to other jobs on the machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ------------------------------------------------------------------------------------------------ corpus
def write_corpus(root: Path) -> dict[str, list[str]]:
    """~5.3 GB of JSON lines (documents of ~1,000 characters of random words), written once."""
    files: dict[str, list[str]] = {}
    for name, (gb, alphabet) in TASKS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        done = folder / "DONE"
        if not done.exists():
            rng = np.random.default_rng(len(name))
            letters = np.array(list(alphabet))
            words = ["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(20_000)]
            pool = np.array(words)
            target, written, shard, doc = int(gb * 2**30), 0, 0, 0
            t0 = time.time()
            while written < target:
                with open(folder / f"part-{shard:04d}.jsonl", "w", encoding="utf-8") as f:
                    size = 0
                    while size < SHARD_BYTES and written + size < target:
                        picks = pool[rng.integers(0, len(pool), size=(1000, 160))]
                        lines = "".join(json.dumps({"id": f"{name}-{doc + i}", "text": " ".join(row)},
                                                   ensure_ascii=False) + "\n" for i, row in enumerate(picks))
                        doc += 1000
                        f.write(lines)
                        size += len(lines.encode("utf-8"))
                written += size
                shard += 1
            done.write_text(str(written))
            print(f"  wrote {name}: {written / 2**30:.2f} GB in {shard} shards ({time.time() - t0:.0f} s)", flush=True)
        files[name] = sorted(str(p) for p in folder.glob("part-*.jsonl"))
    return files


def tokenizer_for(root: Path, files: dict[str, list[str]]):
    """A byte-level BPE tokenizer (4,000 pieces) trained on the first 5,000 documents of each task."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    path = root / "tokenizer"
    if not (path / "tokenizer.json").exists():
        sample = []
        for names in files.values():
            with open(names[0], encoding="utf-8") as f:
                sample += [json.loads(next(f))["text"] for _ in range(5000)]
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(sample, vocab_size=4000, special_tokens=["<pad>", "</s>"])
        PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", eos_token="</s>").save_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class WhitespaceTokenizer:
    """Words hashed to 4,000 ids: a tokenizer ~20x cheaper than BPE, to push a whole corpus through the stream."""

    eos_token_id = 1

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[2 + hash(w) % 3998 for w in t.split()] for t in texts]}


# ------------------------------------------------------------------------------------------------ 1. memory
def bench_memory(root: Path, files: dict[str, list[str]], rows: int, map_fraction: float, skip_map: bool,
                 tokenizer: str = "bpe", tau: float = 3.33) -> None:
    from hf_ptjf.data.preprocess import lm_rows

    tok = tokenizer_for(root, files) if tokenizer == "bpe" else WhitespaceTokenizer()
    pack = lm_rows(tok, 128)
    sizes = {n: float(sum(os.path.getsize(f) for f in fs)) for n, fs in files.items()}
    rates = temperature(list(sizes.values()), tau)
    streams = [TaskStream.from_iterable(n, datasets.load_dataset("json", data_files=fs, split="train", streaming=True),
                                        transform=pack, window=1000, seed=0) for n, fs in files.items()]
    mixture = MixtureStream(streams, rates, batch_size=8, collator=lambda r: {"rows": r}, seed=0)
    total_gb = sum(sizes.values()) / 2**30
    print(f"[1] memory: {total_gb:.2f} GB of JSON lines in {sum(map(len, files.values()))} shards; rates "
          f"{dict(zip(files, np.round(rates, 3)))} (temperature {tau:g} on bytes); tokenizer {tokenizer}", flush=True)
    start_rss = rss_mib()
    curve = [(0, start_rss)]
    t0, c0, seen = time.time(), cpu_s(), 0
    for i, batch in enumerate(mixture):
        seen += len(batch["rows"])
        if (i + 1) % (2000 if rows <= 4_000_000 else 25_000) == 0:
            curve.append((seen, rss_mib()))
        if seen >= rows:
            break
    elapsed, cpu = time.time() - t0, cpu_s() - c0
    print(f"    streamed {seen:,} packed rows of 128 tokens in {elapsed:.0f} s, {cpu:.0f} CPU s ({seen / elapsed:,.0f} rows/s); "
          f"RSS start {start_rss:.0f} MiB, peak {peak_rss_mib():.0f} MiB, growth {max(r for _, r in curve) - start_rss:.0f} MiB")
    print("    RSS curve (rows, MiB): " + ", ".join(f"({n:,}, {r:.0f})" for n, r in curve))
    read = []
    for stream, name in zip(streams, files):
        state = batch["stream_state"]["tasks"][name]
        done = stream.shard_order(state["pass"])[: state["cursor"]]
        gb = (state["pass"] * sizes[name] + sum(os.path.getsize(files[name][i]) for i in done)) / 2**30
        read.append(f"{name} pass {state['pass'] + 1}, {gb:.2f} GB of whole shards read")
    print("    read: " + "; ".join(read), flush=True)
    if skip_map:
        return
    # the map-style path on the same data: Arrow cache + tokenizing map (what it costs before the first step)
    cache = root / "map_cache"
    shutil.rmtree(cache, ignore_errors=True)
    chosen = {n: fs[: max(1, round(len(fs) * map_fraction))] for n, fs in files.items()}  # each task's first shards
    chosen_gb = sum(os.path.getsize(f) for fs in chosen.values() for f in fs) / 2**30
    t0, c0 = time.time(), cpu_s()
    total_rows = 0
    for name, fs in chosen.items():
        ds = datasets.load_dataset("json", data_files=fs, split="train", cache_dir=str(cache))
        ds = ds.map(pack, batched=True, batch_size=1000, remove_columns=ds.column_names)
        total_rows += len(ds)
    elapsed, cpu = time.time() - t0, cpu_s() - c0
    disk = du(cache) / 2**30
    print(f"    map-style on {chosen_gb:.2f} GB ({map_fraction:.0%} of the shards): {elapsed:.0f} s, {cpu:.0f} CPU s before "
          f"the first step ({total_rows:,} packed rows), {disk:.2f} GB of disk (Arrow cache + tokenized cache), "
          f"peak RSS {peak_rss_mib():.0f} MiB; per GB of JSON lines: {elapsed / chosen_gb:.0f} s, {cpu / chosen_gb:.0f} "
          f"CPU s, {disk / chosen_gb:.2f} GB of disk")
    shutil.rmtree(cache, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ 2. speed
def token_shards(root: Path, name: str, shards: int, rows: int, seed: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "tokens" / name
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    rng = np.random.default_rng(seed)
    for k in range(shards):
        path = folder / f"part-{k:04d}.parquet"
        if not path.exists():
            lengths = rng.integers(12, 36, size=rows)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            values = pa.array(rng.integers(2, 8000, size=int(offsets[-1]), dtype=np.int32))
            ids = pa.ListArray.from_arrays(pa.array(offsets), values)
            pq.write_table(pa.table({"input_ids": ids, "row": np.arange(rows) + k * rows}), path)
        out.append(str(path))
    return out


def bench_speed(root: Path, rows: int) -> None:
    parts = {"a": token_shards(root, "a", 8, 250_000, 1), "b": token_shards(root, "b", 4, 50_000, 2),
             "c": token_shards(root, "c", 2, 5_000, 3)}
    sizes = [8 * 250_000, 4 * 50_000, 2 * 5_000]
    rates = temperature(sizes, 3.33)

    def load(n):
        return datasets.load_dataset("parquet", data_files=parts[n], split="train", streaming=True)

    def ours() -> float:
        streams = [TaskStream.from_iterable(n, load(n), window=1000, seed=0) for n in parts]
        t0, seen = time.perf_counter(), 0
        for batch in MixtureStream(streams, rates, batch_size=8, collator=lambda r: {"rows": r}, seed=0):
            seen += len(batch)
            if seen >= rows:
                break
        return seen / (time.perf_counter() - t0)

    def theirs() -> float:
        mixed = datasets.interleave_datasets([load(n) for n in parts], probabilities=rates.tolist(), seed=0,
                                             stopping_strategy="all_exhausted")
        t0, seen, batch = time.perf_counter(), 0, []
        for row in mixed:
            batch.append(row)
            if len(batch) == 8:
                seen += 8
                batch = []
                if seen >= rows:
                    break
        return seen / (time.perf_counter() - t0)

    a, b = [], []
    for _ in range(3):
        a.append(ours())
        b.append(theirs())
    print(f"[2] speed, {rows:,} rows of token ids from Parquet shards (3 tasks, temperature 3.33): "
          f"MixtureStream {max(a):,.0f} rows/s, interleave_datasets {max(b):,.0f} rows/s: ratio {max(a) / max(b):.2f}x "
          f"(each try: {', '.join(f'{x / y:.2f}' for x, y in zip(a, b))})", flush=True)


# ------------------------------------------------------------------------------------------------ 3. resume
def bench_resume(root: Path) -> None:
    files = token_shards(root, "resume", 100, 100_000, 4)
    stream = TaskStream.from_iterable(
        "r", datasets.load_dataset("parquet", data_files=files, split="train", streaming=True), window=1000, seed=0)
    reader = stream.reader()
    states, position = {}, 0
    t0 = time.time()
    for target in (1_000, 100_000, 10_000_000):
        while position < target:
            next(reader)
            position += 1
        states[target] = json.loads(json.dumps(reader.state()))
    print(f"[3] resume: reached 1e7 rows in {time.time() - t0:.0f} s (100 shards of 100,000 rows, windows of 1,000)")
    for target, state in states.items():
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            resumed = stream.reader(state=state)
            next(resumed)
            best = min(best, time.perf_counter() - t)
        within = "start of a shard" if state["shard_state"] is None else "within a shard"
        mixture = float("inf")
        for _ in range(3):  # the same through a MixtureStream: its task sequence positioned at that batch too
            t = time.perf_counter()
            stream_at = MixtureStream([stream], [1.0], batch_size=8, collator=lambda r: {"rows": r}, seed=0,
                                      start_batch=target // 8, reader_states={0: {"r": state}})
            next(iter(stream_at))
            mixture = min(mixture, time.perf_counter() - t)
        print(f"    position {target:>12,}: {best * 1000:7.1f} ms to resume the reader and get its first row, "
              f"{mixture * 1000:7.1f} ms for a MixtureStream's first batch there (pass {state['pass']}, shard "
              f"{state['cursor']} of its order, window {state['window']}, {within})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder for the generated corpus (reused when present)")
    p.add_argument("--only", nargs="*", type=int, default=[1, 2, 3])
    p.add_argument("--rows", type=int, default=400_000, help="[1] packed rows to stream")
    p.add_argument("--map-fraction", type=float, default=1.0, help="[1] share of the shards the map-style path loads")
    p.add_argument("--skip-map", action="store_true", help="[1] stream only (no map-style comparison)")
    p.add_argument("--tokenizer", choices=["bpe", "whitespace"], default="bpe",
                   help="[1] bpe (byte-level BPE, the real cost) or whitespace (hashed words: a whole pass is cheap)")
    p.add_argument("--tau", type=float, default=3.33, help="[1] temperature on the tasks' bytes (1: proportional)")
    p.add_argument("--speed-rows", type=int, default=200_000, help="[2] rows per try")
    args = p.parse_args()
    root = Path(args.data)
    if 1 in args.only:
        bench_memory(root, write_corpus(root), args.rows, args.map_fraction, args.skip_map, args.tokenizer, args.tau)
    if 2 in args.only:
        bench_speed(root, args.speed_rows)
    if 3 in args.only:
        bench_resume(root)


if __name__ == "__main__":
    main()
