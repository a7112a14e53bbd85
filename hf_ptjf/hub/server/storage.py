"""The offline Hub's storage: a content-addressed blob store and JSON commit manifests, no git needed.

Under ``root``:

* ``blobs/<sha256>``: file contents, content-addressed;
* ``repos/<type>s/<namespace>/<name>/repo.json``: branches (``refs``) and metadata;
* ``repos/.../commits/<oid>.json``: one manifest per commit (``{path: sha256}``, parents,
  message); commit oids are random-salted 40-hex sha1s, like git's.

Hashes and sizes are recomputed from the blob bytes on disk whenever they are reported, so a
blob tampered with on disk shows up as a changed file (``verify_revision`` relies on that).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from ...files import atomic_write_bytes
from .errors import HubHTTPError

__all__ = ["BlobStore", "FAKE_USER", "FileStat", "NAME_RE", "REPO_TYPES", "RepoStore", "git_blob_sha1", "now"]

FAKE_USER = "test-user"
REPO_TYPES = ("model", "dataset", "space")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# What the Hub puts in a fresh repo (shortened): a new repo always has one commit, so "main" resolves.
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def now() -> str:
    """The current UTC time as the Hub writes it (ISO 8601, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_sha1(data: bytes) -> str:
    """The oid git (and the Hub, for non-LFS files) reports: sha1 over ``"blob <size>\\0"`` + content."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class FileStat:
    """Size and hashes of a blob as stored now."""

    size: int
    sha256: str  # of the bytes on disk now (differs from the blob name if tampered with)
    git_oid: str


class BlobStore:
    """Content-addressed file contents under ``root`` (``<root>/<sha256>``)."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._stat_cache: dict[tuple[str, int, int], FileStat] = {}

    def put(self, data: bytes) -> str:
        """Store ``data`` (once); returns its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            atomic_write_bytes(path, data)
        return digest

    def path(self, sha256: str) -> Path:
        """Where the blob named ``sha256`` lives (whether or not it exists)."""
        return self.root / sha256

    def stat(self, sha256: str) -> FileStat:
        """Size and hashes of a blob as stored now; cached on (path, mtime, size)."""
        path = self.path(sha256)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        cached = self._stat_cache.get(key)
        if cached is None:
            data = path.read_bytes()
            cached = FileStat(len(data), hashlib.sha256(data).hexdigest(), git_blob_sha1(data))
            self._stat_cache[key] = cached
        return cached


class RepoStore:
    """On-disk repos: JSON commit manifests over a content-addressed blob store (thread-safe)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.blobs = BlobStore(self.root / "blobs")
        self._lock = threading.RLock()

    # -- repos ----------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(NAME_RE.match(p) for p in parts):  # also keeps paths inside root
            raise HubHTTPError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def load_repo(self, repo_type: str, repo_id: str) -> dict:
        """``repo.json`` of a repo (refs, metadata); 404 if there is no such repo."""
        path = self._repo_dir(repo_type, repo_id) / "repo.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise HubHTTPError(404, f"Repository {repo_id} not found", "RepoNotFound") from None

    def _save_repo(self, repo_type: str, repo_id: str, repo: dict) -> None:
        atomic_write_bytes(self._repo_dir(repo_type, repo_id) / "repo.json", json.dumps(repo, indent=1).encode())

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create ``repo_id`` with an initial ``.gitattributes`` commit; False if it already exists."""
        with self._lock:
            if (self._repo_dir(repo_type, repo_id) / "repo.json").exists():
                return False
            repo = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": now(), "refs": {}}
            self._save_repo(repo_type, repo_id, repo)
            files = {".gitattributes": self.blobs.put(_GITATTRIBUTES)}
            self._write_commit(repo_type, repo_id, repo, "main", files, [], "initial commit", "")
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Delete a repo and its commits (blobs stay: they may be shared)."""
        with self._lock:
            self.load_repo(repo_type, repo_id)  # 404 if missing
            shutil.rmtree(self._repo_dir(repo_type, repo_id))

    # -- commits --------------------------------------------------------------------------------
    def commit(self, repo_type: str, repo_id: str, oid: str) -> dict:
        """The manifest of commit ``oid``: ``files`` (``{path: sha256}``), parents, title, message, date."""
        path = self._repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json"
        return json.loads(path.read_text())

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Branch name (``main``, ``refs/heads/main``) or commit sha (>= 7 hex chars) -> commit oid."""
        repo = self.load_repo(repo_type, repo_id)
        branch = revision.removeprefix("refs/heads/")
        if branch in repo["refs"]:
            return repo["refs"][branch]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            commits = self._repo_dir(repo_type, repo_id) / "commits"
            matches = [p.stem for p in commits.glob(f"{revision}*.json")]
            if len(matches) == 1:
                return matches[0]
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, repo_type: str, repo_id: str, oid: str) -> Iterator[dict]:
        """Commits reachable from ``oid``, newest first (first-parent chain)."""
        while oid:
            commit = self.commit(repo_type, repo_id, oid)
            yield commit
            oid = commit["parents"][0] if commit["parents"] else ""

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        """Point a new ``branch`` at ``starting_point`` (default ``main``); 409 if it exists."""
        with self._lock:
            repo = self.load_repo(repo_type, repo_id)
            if branch in repo["refs"]:
                raise HubHTTPError(409, f"Reference {branch} already exists")
            if COMMIT_RE.match(branch):
                raise HubHTTPError(400, "A branch name cannot look like a commit sha")
            repo["refs"][branch] = self.resolve(repo_type, repo_id, starting_point or "main")
            self._save_repo(repo_type, repo_id, repo)

    def apply_commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        operations: Sequence[dict],
        title: str,
        message: str,
        parent_commit: str | None = None,
    ) -> str:
        """Apply NDJSON operations on top of ``branch`` atomically; returns the new commit oid."""
        with self._lock:
            repo = self.load_repo(repo_type, repo_id)
            if branch not in repo["refs"]:
                if COMMIT_RE.match(branch):
                    raise HubHTTPError(400, "Cannot commit to a commit sha: commit to a branch")
                raise HubHTTPError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo["refs"][branch]
            if parent_commit and not head.startswith(parent_commit.lower()):
                # Compare-and-swap, like the Hub: somebody committed since the caller looked.
                raise HubHTTPError(412, f"A commit has happened since {parent_commit}. Please refresh and try again.")
            files = dict(self.commit(repo_type, repo_id, head)["files"])
            for op in operations:
                self._apply_op(files, op)
            return self._write_commit(repo_type, repo_id, repo, branch, files, [head], title, message)

    def _apply_op(self, files: dict[str, str], op: dict) -> None:
        key, value = op.get("key"), op.get("value") or {}
        path = str(value.get("path", "")).strip("/")
        if not path or ".." in path.split("/"):
            raise HubHTTPError(400, f"Invalid path in commit operation: {path!r}")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubHTTPError(400, f"Unsupported encoding {value.get('encoding')!r}")
            files[path] = self.blobs.put(base64.b64decode(value.get("content", "")))
        elif key == "lfsFile":
            oid = str(value.get("oid", ""))
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not self.blobs.path(oid).exists():
                raise HubHTTPError(400, f"LFS upload is not supported by this test server (unknown oid for {path})")
            files[path] = oid
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            doomed = [p for p in files if p.startswith(path + "/")]
            if not doomed:
                raise HubHTTPError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubHTTPError(400, f"Unknown commit operation {key!r}")

    def _write_commit(
        self,
        repo_type: str,
        repo_id: str,
        repo: dict,
        branch: str,
        files: dict,
        parents: list,
        title: str,
        message: str,
    ) -> str:
        body = {
            "parents": parents,
            "files": dict(sorted(files.items())),
            "title": title,
            "message": message,
            "date": now(),
            "authors": [FAKE_USER],
        }
        # Salted so that two identical commits still get distinct oids, as with git timestamps.
        oid = hashlib.sha1(json.dumps({**body, "salt": secrets.token_hex(8)}, sort_keys=True).encode()).hexdigest()
        commit_path = self._repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json"
        atomic_write_bytes(commit_path, json.dumps({"oid": oid, **body}, indent=1).encode())
        repo["refs"][branch] = oid
        repo["lastModified"] = body["date"]
        self._save_repo(repo_type, repo_id, repo)
        return oid
