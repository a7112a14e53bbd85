"""The offline Hub's storage: a content-addressed blob store and JSON commit manifests, no git needed.

Under ``root``:

* ``blobs/<sha256>``: file contents, content-addressed;
* ``blobs/.incoming/``: LFS uploads being received (streamed to disk, hashed as they arrive, renamed
  to ``blobs/<sha256>`` only once the hash matches the announced oid);
* ``repos/<type>s/<namespace>/<name>/repo.json``: branches (``refs``) and metadata;
* ``repos/.../commits/<oid>.json``: one manifest per commit (``files``: ``{path: sha256}``, ``lfs``: the
  paths committed as LFS files, parents, message); commit oids are random-salted 40-hex sha1s, like git's.

Hashes and sizes are recomputed from the blob bytes on disk whenever they are reported, so a
blob tampered with on disk shows up as a changed file (``verify_revision`` relies on that).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...files import atomic_write_bytes
from .errors import HubHTTPError

__all__ = [
    "BlobStore",
    "FAKE_USER",
    "FileStat",
    "NAME_RE",
    "REPO_TYPES",
    "RepoStore",
    "SHA256_RE",
    "git_blob_sha1",
    "lfs_pointer",
    "now",
]

FAKE_USER = "test-user"
REPO_TYPES = ("model", "dataset", "space")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# What the Hub puts in a fresh repo (shortened): a new repo always has one commit, so "main" resolves.
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def now() -> str:
    """The current UTC time as the Hub writes it (ISO 8601, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_sha1(data: bytes) -> str:
    """The oid git (and the Hub, for non-LFS files) reports: sha1 over ``"blob <size>\\0"`` + content."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file (its git oid is the Hub's ``blobId``)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class FileStat:
    """Size and hashes of a blob as stored now."""

    size: int
    sha256: str  # of the bytes on disk now (differs from the blob name if tampered with)
    git_oid: str  # of the content, as a regular git file

    @property
    def pointer(self) -> bytes:
        """The LFS pointer of this content."""
        return lfs_pointer(self.sha256, self.size)


class _Hashes:
    """sha256 and git blob sha1 of a stream of ``size`` bytes, fed chunk by chunk (one read pass)."""

    def __init__(self, size: int):
        self.size, self.seen = size, 0
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(b"blob %d\x00" % size)

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._sha1.update(chunk)
        self.seen += len(chunk)

    def stat(self) -> FileStat:
        return FileStat(self.seen, self._sha256.hexdigest(), self._sha1.hexdigest())


class BlobStore:
    """Content-addressed file contents under ``root`` (``<root>/<sha256>``)."""

    def __init__(self, root: Path):
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        for stale in self.incoming.glob("*.part"):  # uploads cut short when a server process died
            stale.unlink(missing_ok=True)
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
            hashes = _Hashes(st.st_size)
            with open(path, "rb") as f:  # in chunks: blobs can be many GB
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    hashes.update(chunk)
            cached = self._stat_cache[key] = hashes.stat()
        return cached

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Whether the blob ``sha256`` is stored (with ``size`` bytes, if given)."""
        path = self.path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def ingest(self, chunks: Iterable[bytes], sha256: str, size: int) -> FileStat:
        """Store an upload announced as ``sha256``/``size``, written to disk as ``chunks`` arrive.

        Nothing is held in memory but one chunk; the bytes become blob ``sha256`` only if they hash to it
        (and have ``size`` bytes): otherwise 400 and nothing is kept. A stream cut short leaves nothing.
        """
        if not SHA256_RE.match(sha256):
            raise HubHTTPError(400, f"Invalid LFS oid {sha256!r}: expected a sha256 in hex")
        tmp = self.incoming / f"{sha256}.{secrets.token_hex(4)}.part"
        hashes = _Hashes(size)
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    hashes.update(chunk)
                f.flush()
                os.fsync(f.fileno())
            got = hashes.stat()
            if got.size != size or got.sha256 != sha256:
                raise HubHTTPError(400, f"Upload rejected: the {got.size} bytes received hash to sha256 {got.sha256}, "
                                        f"not the announced oid {sha256} ({size} bytes)")
            os.replace(tmp, self.path(sha256))
        finally:
            tmp.unlink(missing_ok=True)
        st = self.path(sha256).stat()
        self._stat_cache[(str(self.path(sha256)), st.st_mtime_ns, st.st_size)] = got
        return got


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
            parent = self.commit(repo_type, repo_id, head)
            files, lfs = dict(parent["files"]), set(parent.get("lfs", ()))
            for op in operations:
                self._apply_op(files, lfs, op)
            return self._write_commit(repo_type, repo_id, repo, branch, files, [head], title, message, lfs)

    def _apply_op(self, files: dict[str, str], lfs: set[str], op: dict) -> None:
        key, value = op.get("key"), op.get("value") or {}
        path = str(value.get("path", "")).strip("/")
        if not path or ".." in path.split("/"):
            raise HubHTTPError(400, f"Invalid path in commit operation: {path!r}")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubHTTPError(400, f"Unsupported encoding {value.get('encoding')!r}")
            files[path] = self.blobs.put(base64.b64decode(value.get("content", "")))
            lfs.discard(path)
        elif key == "lfsFile":
            oid, size = str(value.get("oid", "")), value.get("size")
            if not SHA256_RE.match(oid) or not self.blobs.has(oid, size if isinstance(size, int) else None):
                raise HubHTTPError(400, f"LFS file {path}: object {oid} ({size} bytes) was never uploaded; upload it "
                                        "through the LFS batch API ({repo}.git/info/lfs/objects/batch) first")
            files[path] = oid
            lfs.add(path)
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
        lfs: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> str:
        body = {
            "parents": parents,
            "files": dict(sorted(files.items())),
            "lfs": sorted(lfs & files.keys()),
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
