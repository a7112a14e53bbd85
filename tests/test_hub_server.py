"""The test Hub server, driven by the real huggingface_hub client over 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import httpx

from .hub_faults import FaultyHubServer
from hf_ptjf.hub import hub_endpoint_env, use_endpoint

REPO = "test-user/demo"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@pytest.fixture
def server(tmp_path):
    with FaultyHubServer(tmp_path / "hub") as srv, use_endpoint(srv.url, cache_dir=tmp_path / "cache"):
        yield srv


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4)
    return root


def test_create_repo_info_whoami(server):
    api = HfApi()
    url = huggingface_hub.create_repo(REPO, exist_ok=True)  # module-level HfApi is patched too
    assert url.repo_id == REPO and url.endpoint == server.url
    assert api.create_repo("demo", exist_ok=True).repo_id == REPO  # no namespace: the fake user's
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    info = api.model_info(REPO)
    assert len(info.sha) == 40 and [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert api.whoami(token="hf_anything")["name"] == "test-user"
    assert not api.repo_exists("test-user/nope")


def test_commit_list_and_download(server, folder):
    api = HfApi()
    api.create_repo(REPO)
    sha = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="first").oid
    assert api.list_repo_files(REPO, revision=sha) == [".gitattributes", "a.txt", "sub/b.bin"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO, revision=sha)}
    assert top == {"sub": "RepoFolder", "a.txt": "RepoFile", ".gitattributes": "RepoFile"}
    (b,) = api.list_repo_tree(REPO, path_in_repo="sub", revision=sha, expand=True)
    data = (folder / "sub" / "b.bin").read_bytes()
    assert (b.size, b.blob_id, b.lfs, b.last_commit.oid) == (len(data), git_sha1(data), None, sha)
    assert [p.path for p in api.get_paths_info(REPO, ["a.txt", "sub", "missing"], revision=sha)] == ["a.txt", "sub"]
    files = {s.rfilename: s for s in api.model_info(REPO, revision=sha, files_metadata=True).siblings}
    assert files["a.txt"].blob_id == git_sha1(b"hello")

    path = hf_hub_download(REPO, "sub/b.bin", revision=sha)
    assert Path(path).read_bytes() == data

    # HEAD carries what hf_hub_download needs, with non-LFS semantics (no X-Linked-*, no Xet).
    head = httpx.head(f"{server.url}/{REPO}/resolve/main/sub/b.bin")
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] == f'"{git_sha1(data)}"'
    assert int(head.headers["Content-Length"]) == len(data)
    assert not {"x-linked-size", "x-linked-etag", "x-xet-hash"} & set(head.headers.keys())
    part = httpx.get(f"{server.url}/{REPO}/resolve/{sha}/sub/b.bin", headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.content == data[10:]

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "nope.txt", revision=sha)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="f" * 40)


def test_old_sha_keeps_old_content(server, folder):
    api = HfApi()
    api.create_repo(REPO)
    sha1 = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="v1").oid
    (folder / "a.txt").write_text("changed")
    sha2 = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="v2").oid
    assert sha1 != sha2
    assert Path(hf_hub_download(REPO, "a.txt", revision=sha1)).read_text() == "hello"
    assert Path(hf_hub_download(REPO, "a.txt", revision=sha2)).read_text() == "changed"
    assert [c.commit_id for c in api.list_repo_commits(REPO)][:2] == [sha2, sha1]
    assert api.list_repo_refs(REPO).branches[0].target_commit == sha2
    # Unchanged files are skipped client-side thanks to preupload's "oid": no empty commit.
    assert api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="noop").oid == sha2


def test_preupload_sends_large_files_to_lfs_and_parent_commit_is_checked(server, tmp_path):
    api = HfApi()
    api.create_repo(REPO)
    files = [{"path": "w.safetensors", "sample": "", "size": 10**9}, {"path": "c.json", "sample": "", "size": 10},
             {"path": "edge.bin", "sample": "", "size": 10 * 2**20}, {"path": "e.txt", "sample": "", "size": 0}]
    answer = httpx.post(f"{server.url}/api/models/{REPO}/preupload/main", json={"files": files}).json()
    modes = {f["path"]: f["uploadMode"] for f in answer["files"]}
    assert modes == {"w.safetensors": "lfs", "c.json": "regular", "edge.bin": "regular", "e.txt": "regular"}
    with FaultyHubServer(tmp_path / "inline", lfs_threshold=None) as inline:  # the old path: everything inline
        HfApi(endpoint=inline.url).create_repo(REPO)
        answer = httpx.post(f"{inline.url}/api/models/{REPO}/preupload/main", json={"files": files[:1]}).json()
        assert answer["files"][0]["uploadMode"] == "regular"

    head = api.model_info(REPO).sha
    new = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, parent_commit=head).oid
    with pytest.raises(HfHubHTTPError) as err:  # stale parent: compare-and-swap fails like on the Hub
        api.upload_file(path_or_fileobj=b"y", path_in_repo="x.txt", repo_id=REPO, parent_commit=head)
    assert err.value.response.status_code == 412
    api.delete_file("x.txt", REPO, parent_commit=new)
    assert api.list_repo_files(REPO) == [".gitattributes"]
    api.create_branch(REPO, branch="dev")
    api.upload_file(path_or_fileobj=b"d", path_in_repo="d.txt", repo_id=REPO, revision="dev")
    assert api.file_exists(REPO, "d.txt", revision="dev") and not api.file_exists(REPO, "d.txt")


def test_require_token(tmp_path):
    good, bad = "hf_GoodTokenForTheTestHub0000000001", "hf_BadTokenThatMustNeverBeEchoed0002"
    with FaultyHubServer(tmp_path, require_token=good) as srv, use_endpoint(srv.url):
        api = HfApi()
        assert api.whoami(token=good)["name"] == "test-user"
        with pytest.raises(HfHubHTTPError) as err:
            api.create_repo(REPO, token=bad, exist_ok=True)
        assert err.value.response.status_code == 401
        assert bad not in str(err.value) and bad not in err.value.response.text


def test_faults_fail_delay_drop(server):
    server.faults.fail_next(2, status=503, methods="GET", path_contains="/whoami")
    codes = [httpx.get(f"{server.url}/api/whoami-v2", headers={"Authorization": "Bearer t"}).status_code for _ in "abc"]
    assert codes == [503, 503, 200] and server.faults.pending == 0

    server.faults.delay_next(1, seconds=5, path_contains="/whoami")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/api/whoami-v2", timeout=0.3)

    server.faults.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/api/whoami-v2")
    assert server.count("GET", "/whoami") == 5


def test_stop_and_restart_keeps_url_and_data(server, folder):
    api = HfApi()
    api.create_repo(REPO)
    sha = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="v1").oid
    url = server.url
    server.stop()
    with pytest.raises(httpx.ConnectError):
        api.model_info(REPO)
    server.start()
    assert server.url == url and api.model_info(REPO).sha == sha


def test_use_endpoint_patches_and_restores(tmp_path):
    before = (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, os.environ.get("HF_ENDPOINT"))
    with use_endpoint("http://127.0.0.1:9/", cache_dir=tmp_path) as url:
        assert url == constants.ENDPOINT == HfApi().endpoint == huggingface_hub.hf_api.api.endpoint
        assert os.environ["HF_ENDPOINT"] == url and constants.HF_HUB_DISABLE_XET
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(url) and constants.HF_HUB_CACHE == str(tmp_path)
    assert (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, os.environ.get("HF_ENDPOINT")) == before
    assert hub_endpoint_env("http://h:1/")["HF_ENDPOINT"] == "http://h:1"


def test_cli_serves_until_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hf_ptjf.hub.server", "--root", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/api/whoami-v2", headers={"Authorization": "Bearer x"}).json()["name"] == "test-user"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


def test_large_file_goes_through_lfs_and_reads_back_like_the_hub(server):
    api = HfApi()
    api.create_repo(REPO)
    data = os.urandom(11 * 2**20)  # over the 10 MiB threshold
    sha256 = hashlib.sha256(data).hexdigest()
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=REPO).oid
    assert server.count("POST", ".git/info/lfs/objects/batch") == 1 and server.count("PUT", "/lfs/objects/") == 1
    assert server.count("POST", "/lfs/objects/verify") == 1

    (entry,) = api.get_paths_info(REPO, ["w.safetensors"], revision=sha)
    pointer = lfs_pointer(data)
    assert (entry.size, entry.lfs.sha256, entry.lfs.size, entry.blob_id) == (len(data), sha256, len(data), git_sha1(pointer))
    sibling = {s.rfilename: s for s in api.model_info(REPO, revision=sha, files_metadata=True).siblings}["w.safetensors"]
    assert (sibling.lfs.sha256, sibling.lfs.pointer_size, sibling.blob_id) == (sha256, len(pointer), git_sha1(pointer))
    head = httpx.head(f"{server.url}/{REPO}/resolve/{sha}/w.safetensors")
    assert head.headers["X-Linked-Etag"] == f'"{sha256}"' and int(head.headers["X-Linked-Size"]) == len(data)
    assert Path(hf_hub_download(REPO, "w.safetensors", revision=sha)).read_bytes() == data

    # the same content under another name: the batch API says it is stored, nothing is uploaded again
    api.upload_file(path_or_fileobj=data, path_in_repo="copy.safetensors", repo_id=REPO)
    assert server.count("POST", ".git/info/lfs/objects/batch") == 2 and server.count("PUT", "/lfs/objects/") == 1


def lfs_upload_href(server, data: bytes) -> str:
    objects = [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    answer = httpx.post(f"{server.url}/{REPO}.git/info/lfs/objects/batch",
                        json={"operation": "upload", "transfers": ["basic"], "objects": objects}).json()
    return answer["objects"][0]["actions"]["upload"]["href"]


def test_lfs_upload_with_the_wrong_sha256_is_refused_and_leaves_nothing(server):
    api = HfApi()
    api.create_repo(REPO)
    head = api.model_info(REPO).sha
    announced, sent = b"a" * 1000, b"b" * 1000
    href = lfs_upload_href(server, announced)
    answer = httpx.put(href, content=sent)
    assert answer.status_code == 400 and "hash to sha256" in answer.json()["error"]
    oid = hashlib.sha256(announced).hexdigest()
    assert not (server.store.blobs.path(oid).exists() or any(server.store.blobs.incoming.iterdir()))
    assert httpx.post(f"{server.url}/{REPO}.git/info/lfs/objects/verify", json={"oid": oid, "size": 1000}).status_code == 404
    commit = b'{"key": "header", "value": {"summary": "m"}}\n' + json.dumps(
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": 1000}}).encode()
    answer = httpx.post(f"{server.url}/api/models/{REPO}/commit/main", content=commit)
    assert answer.status_code == 400 and "never uploaded" in answer.json()["error"]
    assert api.model_info(REPO).sha == head  # no commit
    assert httpx.put(href.replace("sig=", "sig=0"), content=announced).status_code == 403  # a forged href
    assert httpx.put(href, content=announced).status_code == 200 and server.store.blobs.has(oid, 1000)


def test_lfs_upload_href_carries_its_own_authorisation(tmp_path):
    good = "hf_GoodTokenForTheTestHub0000000001"
    with FaultyHubServer(tmp_path, require_token=good, lfs_threshold=0) as srv, use_endpoint(srv.url):
        api = HfApi(token=good)
        api.create_repo(REPO)
        sha = api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=REPO).oid  # PUT has no token
        assert srv.count("PUT", "/lfs/objects/") == 1
        assert api.get_paths_info(REPO, ["w.bin"], revision=sha)[0].lfs.size == 7
        with pytest.raises(HfHubHTTPError) as err:
            HfApi(token="hf_BadTokenThatMustNeverBeEchoed0002").upload_file(
                path_or_fileobj=b"other", path_in_repo="x.bin", repo_id=REPO)
        assert err.value.response.status_code == 401
