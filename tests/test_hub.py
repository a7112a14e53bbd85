"""hf_ptjf.hub against the local test Hub, with the real huggingface_hub and transformers clients."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub.utils import httpx
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from .hub_faults import FaultyHubServer
from hf_ptjf.hub import HubError, push_folder, redact, snapshot_at, verify_revision, write_model_card
from hf_ptjf.hub import hub_endpoint_env, use_endpoint

REPO = "test-user/tiny-t5"
FAST = {"max_retries": 3, "backoff": 0.01, "timeout": 10.0}  # keep failure paths quick


def tiny_t5(seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, decoder_start_token_id=0)
    return T5ForConditionalGeneration(config)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(61)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture
def hub(tmp_path):
    with FaultyHubServer(tmp_path / "hub") as srv, use_endpoint(srv.url, cache_dir=tmp_path / "cache"):
        yield srv


def saved(tmp_path: Path, name: str, model, tokenizer) -> Path:
    folder = tmp_path / name
    model.save_pretrained(folder)  # safetensors by default
    tokenizer.save_pretrained(folder)
    return folder


def test_push_to_hub_then_reload_at_sha(hub, tokenizer):
    model = tiny_t5(0)
    model.push_to_hub(REPO)
    sha = tokenizer.push_to_hub(REPO).oid
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(REPO, revision=sha)
    assert same_weights(model, reloaded)
    tok = AutoTokenizer.from_pretrained(REPO, revision=sha)
    assert tok("w1 w2 zz").input_ids == tokenizer("w1 w2 zz").input_ids


def test_push_folder_pins_revisions(hub, tokenizer, tmp_path):
    old, new = tiny_t5(0), tiny_t5(1)
    sha1 = push_folder(saved(tmp_path, "v1", old, tokenizer), REPO, commit_message="pretrain")
    verify_revision(REPO, sha1, tmp_path / "v1")
    sha2 = push_folder(saved(tmp_path, "v2", new, tokenizer), REPO, commit_message="finetune")
    assert sha1 != sha2 and len(sha2) == 40
    assert same_weights(old, AutoModelForSeq2SeqLM.from_pretrained(REPO, revision=sha1))
    assert same_weights(new, AutoModelForSeq2SeqLM.from_pretrained(REPO, revision=sha2))
    path = snapshot_at(REPO, sha1)
    assert path.name == sha1 and same_weights(old, AutoModelForSeq2SeqLM.from_pretrained(path))
    hub.stop()
    assert snapshot_at(REPO, sha1, max_retries=0) == path  # a pinned, cached commit needs no Hub
    with pytest.raises(HubError, match="running"):
        snapshot_at(REPO, sha2, max_retries=0)  # only sha2's config & weights were cached, not its tokenizer


def test_push_folder_mirrors_the_folder(hub, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "keep.txt").write_text("1")
    (folder / "gone.txt").write_text("2")
    push_folder(folder, REPO, commit_message="a")
    (folder / "gone.txt").unlink()
    sha = push_folder(folder, REPO, commit_message="b")
    verify_revision(REPO, sha, folder)
    files = HfApi().list_repo_files(REPO, revision=sha)
    assert "gone.txt" not in files and "keep.txt" in files  # deleted remotely too, at the new sha
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "gone.txt", revision=sha)


def test_retries_two_503_then_succeeds(hub, tmp_path, caplog):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    hub.faults.fail_next(2, status=503, methods="POST", path_contains="/commit/")
    sha = push_folder(folder, REPO, commit_message="m", **FAST)
    assert hub.count("POST", "/commit/") == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    verify_revision(REPO, sha, folder)


def test_persistent_5xx_gives_up_after_bounded_retries(hub, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    hub.faults.fail_next(100, status=500, methods="POST", path_contains="/commit/")
    with pytest.raises(HubError) as err:
        push_folder(folder, REPO, commit_message="m", **{**FAST, "max_retries": 2})
    assert err.value.attempts == 3 and err.value.status == 500
    assert hub.count("POST", "/commit/") == 3
    assert REPO in str(err.value) and hub.url in str(err.value) and "running" in str(err.value)


def test_timeout_is_retried(hub, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    hub.faults.delay_next(1, seconds=5, path_contains="/commit/")
    sha = push_folder(folder, REPO, commit_message="m", **{**FAST, "timeout": 1.5})
    assert hub.count("POST", "/commit/") == 2
    verify_revision(REPO, sha, folder)


def test_server_down_is_a_clear_error(hub, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    hub.stop()
    with pytest.raises(HubError) as err:
        push_folder(folder, REPO, commit_message="m", **{**FAST, "max_retries": 1})
    message = str(err.value)
    assert err.value.attempts == 2 and err.value.status is None
    assert hub.url in message and "$HF_ENDPOINT" in message and "running" in message


def test_bad_token_fails_fast_without_leaking_it(tmp_path, caplog):
    good, bad = "hf_GoodTokenForTheTestHub0000000001", "hf_BadTokenThatMustNeverBeEchoed0002"
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    caplog.set_level(logging.DEBUG)
    with FaultyHubServer(tmp_path / "hub", require_token=good) as srv, use_endpoint(srv.url):
        with pytest.raises(HubError) as err:
            push_folder(folder, REPO, token=bad, commit_message="m", **FAST)
        assert push_folder(folder, REPO, token=good, commit_message="m", **FAST)
    message = str(err.value)
    assert err.value.status == 401 and err.value.attempts == 1  # 4xx: no retry
    assert "token" in message and REPO in message
    assert bad not in message and bad not in repr(err.value) and bad not in caplog.text
    assert srv.count("POST", "/api/repos/create") == 2


def test_verify_revision_detects_tampering(hub, tokenizer, tmp_path):
    folder = saved(tmp_path, "m", tiny_t5(0), tokenizer)
    sha = push_folder(folder, REPO, commit_message="m")
    verify_revision(REPO, sha, folder)
    blob = hub.blob_path(REPO, "config.json", revision=sha)
    data = bytearray(blob.read_bytes())
    data[-2] ^= 0x01  # same size, different content
    blob.write_bytes(bytes(data))
    with pytest.raises(HubError, match="config.json"):
        verify_revision(REPO, sha, folder)
    (folder / "extra.txt").write_text("local only")
    with pytest.raises(HubError, match="missing on the Hub: extra.txt"):
        verify_revision(REPO, sha, folder)


def test_verify_revision_detects_tampering_of_an_lfs_file(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "w.bin").write_bytes(os.urandom(4096))
    with FaultyHubServer(tmp_path / "hub", lfs_threshold=0) as srv, use_endpoint(srv.url, cache_dir=tmp_path / "c"):
        sha = push_folder(folder, REPO, commit_message="m")
        assert srv.count("PUT", "/lfs/objects/") == 1  # every non-empty file through LFS at threshold 0
        verify_revision(REPO, sha, folder)
        blob = srv.blob_path(REPO, "w.bin", revision=sha)
        data = bytearray(blob.read_bytes())
        data[0] ^= 0x01
        blob.write_bytes(bytes(data))
        with pytest.raises(HubError, match="sha256 differs for w.bin"):
            verify_revision(REPO, sha, folder)


def test_model_card_round_trip(hub, tmp_path):
    path = write_model_card(
        tmp_path / "card",
        repo_id=REPO,
        base_model="google/t5-small",
        tasks=["en-de", "en-fr"],
        rates=[0.75, 0.25],
        steps={"pretrain": 100, "finetune": 20},
        metrics={"en-de": {"bleu": 12.5}, "en-fr": {"bleu": 9.25}},
        method="PTJF",
    )
    card = ModelCard.load(path)
    assert card.data.base_model == "google/t5-small" and "hf_ptjf" in card.data.tags
    assert card.data.hf_ptjf["rates"] == {"en-de": 0.75, "en-fr": 0.25}
    assert "| en-de | bleu | 12.5 |" in card.text and "| finetune | 20 |" in card.text
    sha = push_folder(path.parent, REPO, commit_message="card")  # README.md passes validate-yaml
    verify_revision(REPO, sha, path.parent)


def test_redact():
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    text = f"token={secret} Authorization: Bearer abc.def hf_ptjf stays"
    assert redact(text, "abc.def") == "token=hf_*** Authorization: Bearer *** hf_ptjf stays"
    assert secret not in redact(f"x {secret}")


# Recorded from write_model_card at aa3f61e (before it was split into helpers): the card must stay byte-identical.
CARD_FULL = (
    "---\nbase_model: google/t5-small\nlanguage:\n- en\n- de\nlibrary_name: transformers\nlicense: apache-2.0\n"
    "tags:\n- hf_ptjf\n- multi-task\n- ptjf-rate-0-3\nhf_ptjf:\n  method: PTJF (rate 0.3)\n"
    "  base_model_revision: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  tasks:\n  - en-de\n  - en-fr\n  - en-fr-x\n"
    "  rates:\n    en-de: 0.5\n    en-fr: 0.25\n  steps:\n    pretrain: 100\n    finetune: 20\n---\n\n# tiny-t5\n\n"
    "Trained with `hf_ptjf` using **PTJF (rate 0.3)**, starting from `google/t5-small` at revision "
    "`aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`.\n\n## Tasks and mixing rates\n\n| Task | Rate |\n| --- | --- |\n"
    "| en-de | 0.5 |\n| en-fr | 0.25 |\n| en-fr-x | n/a |\n\n## Training steps\n\n| Stage | Steps |\n| --- | --- |\n"
    "| pretrain | 100 |\n| finetune | 20 |\n\n## Metrics\n\n| Task | Metric | Value |\n| --- | --- | --- |\n"
    "| en-fr-x | bleu | 1.5 |\n| en-fr | loss | 2.25 |\n| all | eval_loss | 3 |\n| en-de | bleu | 12.5 |\n"
)
CARD_BASE_NO_REVISION = (
    "---\nbase_model: ns/base\nlanguage: fr\nlibrary_name: transformers\ntags:\n- hf_ptjf\n- multi-task\n- static\n"
    "hf_ptjf:\n  method: Static\n  tasks:\n  - t\n  rates:\n    t: 0.125\n  steps:\n    s: 3\n---\n\n# m\n\n"
    "Trained with `hf_ptjf` using **Static**, starting from `ns/base`.\n\n## Tasks and mixing rates\n\n"
    "| Task | Rate |\n| --- | --- |\n| t | 0.125 |\n\n## Training steps\n\n| Stage | Steps |\n| --- | --- |\n"
    "| s | 3 |\n\n## Metrics\n\n| Task | Metric | Value |\n| --- | --- | --- |\n| t | bleu | 1 |\n"
)
CARD_SCRATCH = (
    "---\nlibrary_name: transformers\ntags:\n- hf_ptjf\n- multi-task\n- ptjf\nhf_ptjf:\n  method: '!!'\n  tasks:\n"
    "  - a|b\n  rates:\n    a|b: 1.0\n  steps:\n    total: 7\n---\n\n# x\n\nTrained with `hf_ptjf` using **!!**.\n\n"
    "## Tasks and mixing rates\n\n| Task | Rate |\n| --- | --- |\n| a\\|b | 1 |\n\n## Training steps\n\n"
    "| Stage | Steps |\n| --- | --- |\n| total | 7 |\n\n## Metrics\n\nNo metrics recorded.\n"
)


def test_model_card_is_byte_identical(tmp_path):
    full = write_model_card(
        tmp_path / "full",
        repo_id="test-user/tiny-t5",
        base_model="google/t5-small",
        base_revision="a" * 40,
        tasks=["en-de", "en-fr", "en-fr-x"],
        rates={"en-de": 0.5, "en-fr": 0.25},
        steps={"pretrain": 100, "finetune": 20},
        metrics={"eval_en-fr-x_bleu": 1.5, "eval_en-fr_loss": 2.25, "eval_loss": 3.0, "en-de": {"bleu": 12.5}},
        method="PTJF (rate 0.3)",
        license="apache-2.0",
        language=["en", "de"],
    )
    assert full.read_bytes() == CARD_FULL.encode()
    base = write_model_card(tmp_path / "base", repo_id="ns/m", base_model="ns/base", tasks=["t"], rates={"t": 0.125},
                            steps={"s": 3}, metrics={"t": {"bleu": 1.0}}, method="Static", language="fr")
    assert base.read_bytes() == CARD_BASE_NO_REVISION.encode()
    scratch = write_model_card(tmp_path / "s", repo_id="x", tasks=["a|b"], rates=[1.0], steps=7, metrics={}, method="!!")
    assert scratch.read_bytes() == CARD_SCRATCH.encode()
    with pytest.raises(ValueError, match="2 rates for 1 tasks"):
        write_model_card(tmp_path / "e", repo_id="x", tasks=["a"], rates=[0.5, 0.5], steps=1, metrics={}, method="m")


# --------------------------------------------------------------------------------------------
# Large files stream: LFS uploads to `python -m hf_ptjf.hub.server`, measured in separate processes
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
BIG = 128 * 2**20  # the largest file of the pushed folder: big enough that holding it in memory shows
# Peak-RSS growth allowed over the idle process, for the server and for the pushing client. Streaming
# holds a few MiB of buffers (1 MiB read chunks, 64 KiB send chunks) plus lazily imported code; the old
# path held the file several times over (base64 in the commit body: ~4x in the client, ~5x in the server).
PEAK_BOUND = BIG // 2

# The pushing client: one push_folder in its own process; prints the sha and its peak RSS before / after.
PUSH_CHILD = """
import json, sys
from hf_ptjf.hub import push_folder
def hwm():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
before = hwm()
sha = push_folder(sys.argv[2], sys.argv[1], commit_message="stage output")
print(json.dumps({"sha": sha, "before": before, "after": hwm()}))
"""


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set size) of process ``pid``, in bytes."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def write_stage_folder(folder: Path, seed: int = 0) -> dict[str, str]:
    """A stage output: a BIG single-tensor safetensors file, a 2 MiB file (inline) and a config; sha256 of each."""
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "U8", "shape": [BIG], "data_offsets": [0, BIG]}}).encode()
    header += b" " * (-len(header) % 8)
    rng = torch.Generator().manual_seed(seed)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for _ in range(BIG // 2**24):  # 16 MiB at a time: this process is not the one measured, but keep it small
            f.write(torch.randint(0, 256, (2**24,), dtype=torch.uint8, generator=rng).numpy().tobytes())
    (folder / "extra.bin").write_bytes(os.urandom(2 * 2**20))
    (folder / "config.json").write_text('{"model_type": "none"}')
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def child_env(url: str) -> dict[str, str]:
    # Xet left enabled (hf_xet is installed): push_folder must find out that this Hub takes LFS only.
    return {**os.environ, **hub_endpoint_env(url, disable_xet=False), "PYTHONPATH": str(ROOT),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def push_in_child(url: str, repo: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUSH_CHILD, repo, str(folder)], env=child_env(url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def hub_process(tmp_path):
    """``python -m hf_ptjf.hub.server`` in its own process: (process, url)."""
    proc = subprocess.Popen([sys.executable, "-m", "hf_ptjf.hub.server", "--root", str(tmp_path / "hub"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        yield proc, proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def assert_round_trip(url: str, repo: str, sha: str, want: dict[str, str], cache: Path) -> None:
    with use_endpoint(url, cache_dir=cache):
        for name, digest in want.items():
            path = hf_hub_download(repo, name, revision=sha)
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest, name


def test_push_of_a_large_file_streams_through_lfs(hub_process, tmp_path):
    server, url = hub_process
    want = write_stage_folder(tmp_path / "stage")
    httpx.get(f"{url}/api/whoami-v2", headers={"Authorization": "Bearer x"})  # the server is up and warm
    server_idle = peak_rss(server.pid)
    got = finished(push_in_child(url, REPO, tmp_path / "stage"))
    server_growth, client_growth = peak_rss(server.pid) - server_idle, got["after"] - got["before"]
    sizes = f"server +{server_growth / 2**20:.0f} MiB, client +{client_growth / 2**20:.0f} MiB, file {BIG / 2**20:.0f} MiB"
    assert server_growth < PEAK_BOUND and client_growth < PEAK_BOUND, sizes

    assert_round_trip(url, REPO, got["sha"], want, tmp_path / "cache")
    with use_endpoint(url, cache_dir=tmp_path / "cache"):
        verify_revision(REPO, got["sha"], tmp_path / "stage")
        (info,) = [f for f in HfApi().get_paths_info(REPO, ["model.safetensors"], revision=got["sha"])]
        assert info.lfs is not None and info.lfs.sha256 == want["model.safetensors"]
        assert finished(push_in_child(url, REPO, tmp_path / "stage"))["sha"] == got["sha"]  # unchanged: no commit
        assert len(HfApi().list_repo_commits(REPO)) == 2  # the repo's initial commit and the push


def test_upload_that_does_not_match_its_sha256_is_refused(hub, tmp_path):
    api = HfApi()
    api.create_repo(REPO)
    head = api.model_info(REPO).sha
    path = tmp_path / "w.safetensors"
    path.write_bytes(os.urandom(12 * 2**20))
    op = CommitOperationAdd("w.safetensors", str(path))
    announced = op.upload_info.sha256.hex()  # hashed now; then the file changes before its upload
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="w.safetensors") as err:
        api.create_commit(REPO, operations=[op], commit_message="corrupt")
    assert "400" in repr(err.value.__cause__) or "hash to sha256" in str(err.value.__cause__)
    assert hub.count("PUT", "/lfs/objects/") == 1 and hub.count("POST", "/commit/") == 0
    assert api.model_info(REPO).sha == head and len(api.list_repo_commits(REPO)) == 1
    blobs = hub.store.blobs
    assert not blobs.path(announced).exists() and not blobs.path(hashlib.sha256(data).hexdigest()).exists()
    assert not list(blobs.incoming.iterdir())


def test_push_killed_mid_upload_reruns_to_one_commit(hub, tmp_path):
    want = write_stage_folder(tmp_path / "stage")
    blobs, ingest = hub.store.blobs, hub.store.blobs.ingest
    started, release = threading.Event(), threading.Event()

    def held(chunks, sha256, size):  # the first MiB lands, then the upload stalls until the client is killed
        def stalled():
            it = iter(chunks)
            yield next(it)
            started.set()
            release.wait(60)
            yield from it
        return ingest(stalled(), sha256, size)

    blobs.ingest = held
    child = push_in_child(hub.url, REPO, tmp_path / "stage")
    assert started.wait(120), child.communicate()[1][-3000:]
    assert [p.name.split(".")[0] for p in blobs.incoming.iterdir()] == [want["model.safetensors"]]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    release.set()
    deadline = time.monotonic() + 60
    while list(blobs.incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(blobs.incoming.iterdir()) and not blobs.has(want["model.safetensors"])  # nothing half-kept
    assert len(HfApi().list_repo_commits(REPO)) == 1  # the repo's initial commit only

    del blobs.ingest  # the rerun of the same command
    sha = finished(push_in_child(hub.url, REPO, tmp_path / "stage"))["sha"]
    assert [c.commit_id for c in HfApi().list_repo_commits(REPO)][0] == sha
    assert len(HfApi().list_repo_commits(REPO)) == 2 and hub.count("PUT", "/lfs/objects/") == 2
    assert_round_trip(hub.url, REPO, sha, want, tmp_path / "cache")
