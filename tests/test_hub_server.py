"""The test Hub server, driven by the real huggingface_hub client over 127.0.0.1."""

from __future__ import annotations

import hashlib
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


def test_preupload_is_regular_and_parent_commit_is_checked(server):
    api = HfApi()
    api.create_repo(REPO)
    answer = httpx.post(
        f"{server.url}/api/models/{REPO}/preupload/main",
        json={"files": [{"path": "w.safetensors", "sample": "", "size": 10**9}]},
    ).json()
    assert answer["files"][0]["uploadMode"] == "regular"  # content inline: no LFS, no Xet

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
