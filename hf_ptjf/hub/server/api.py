"""The Hub HTTP API's answers: what each route the real ``huggingface_hub`` client calls returns, as JSON.

Transport-free (the HTTP plumbing is in :mod:`.routes`): each method takes the parsed request and returns
the JSON body, or raises :class:`~.errors.HubHTTPError`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

from .errors import HubHTTPError
from .storage import FAKE_USER, NAME_RE, REPO_TYPES, FileStat, RepoStore, git_blob_sha1

__all__ = ["DEFAULT_LFS_THRESHOLD", "HubAPI", "URL_PREFIX", "file_fields", "truthy"]

URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Files larger than this go through LFS, as on the Hub (which refuses regular files over 10 MiB).
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024


def truthy(value: Any) -> bool:
    """A query or form flag: ``1``, ``true``, ``yes`` (any case)."""
    return str(value).lower() in ("1", "true", "yes")


def file_fields(stat: FileStat, lfs: bool) -> dict[str, Any]:
    """A file's ``size``, git ``oid`` and, for an LFS file, its ``lfs`` block, as the Hub reports them.

    For an LFS file git stores a pointer, so the git oid is the pointer's and the content's sha256 is in
    ``lfs`` (recomputed from the bytes on disk: a tampered blob shows up as a changed sha256).
    """
    if not lfs:
        return {"oid": stat.git_oid, "size": stat.size}
    pointer = stat.pointer
    return {"oid": git_blob_sha1(pointer), "size": stat.size,
            "lfs": {"oid": stat.sha256, "sha256": stat.sha256, "size": stat.size, "pointerSize": len(pointer)}}


class HubAPI:
    """The answers of the offline Hub over ``store``; ``base_url()`` is the server's URL (in commit URLs)."""

    def __init__(
        self,
        store: RepoStore,
        base_url: Callable[[], str],
        require_token: str | None = None,
        lfs_threshold: int | None = DEFAULT_LFS_THRESHOLD,
    ):
        self.store = store
        self.base_url = base_url
        self.require_token = require_token
        self.lfs_threshold = lfs_threshold  # None: every file inline in the commit (no LFS)

    # -- account ------------------------------------------------------------------------------
    def check_auth(self, authorization: str | None, path: str) -> None:
        """401 unless the request carries the required token (any token for whoami)."""
        token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        # Never echo the token back: it would end up in client exceptions and logs.
        if self.require_token is not None and token != self.require_token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        if path == "/api/whoami-v2" and not token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    @staticmethod
    def whoami() -> dict:
        return {
            "type": "user",
            "id": "0" * 24,
            "name": FAKE_USER,
            "fullname": "Test User",
            "email": f"{FAKE_USER}@example.invalid",
            "emailVerified": True,
            "isPro": False,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test-hub", "role": "write"}},
        }

    # -- repos ----------------------------------------------------------------------------------
    def create_repo(self, payload: dict) -> dict:
        """``POST /api/repos/create``; 409 (with the repo's ``url``, read by ``exist_ok=True``) if it exists."""
        repo_type = payload.get("type") or "model"
        name, org = str(payload.get("name", "")), payload.get("organization") or FAKE_USER
        if repo_type not in REPO_TYPES or not NAME_RE.match(name) or not NAME_RE.match(org):
            raise HubHTTPError(400, f"Invalid repo name or type: {org}/{name} ({repo_type})")
        repo_id = f"{org}/{name}"
        url = f"{self.base_url()}/{URL_PREFIX[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.store.create_repo(repo_type, repo_id, private):
            raise HubHTTPError(409, "You already created this repo", extra={"url": url})
        return {"url": url, "name": repo_id, "id": repo_id}

    def delete_repo(self, payload: dict) -> dict:
        """``DELETE /api/repos/delete``."""
        repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
        self.store.delete_repo(payload.get("type") or "model", repo_id)
        return {}

    def repo_info(self, repo_type: str, repo_id: str, revision: str, blobs: bool) -> dict:
        """``GET /api/{type}s/{repo}[/revision/{rev}]``; ``blobs``: sizes and blob ids of the siblings."""
        repo = self.store.load_repo(repo_type, repo_id)
        oid = self.store.resolve(repo_type, repo_id, revision)
        commit = self.store.commit(repo_type, repo_id, oid)
        siblings = []
        for path, sha256 in commit["files"].items():
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                fields = file_fields(self.store.blobs.stat(sha256), path in commit.get("lfs", ()))
                sibling.update(size=fields["size"], blobId=fields["oid"])
                if "lfs" in fields:
                    sibling["lfs"] = {k: fields["lfs"][k] for k in ("sha256", "size", "pointerSize")}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": oid,
            "lastModified": commit["date"],
            "createdAt": repo["createdAt"],
            "private": repo["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        if repo_type == "space":
            info["sdk"] = "static"
        return info

    def create_branch(self, repo_type: str, repo_id: str, branch: str, payload: dict) -> dict:
        """``POST /api/{type}s/{repo}/branch/{branch}``."""
        self.store.create_branch(repo_type, repo_id, branch, payload.get("startingPoint"))
        return {}

    def refs(self, repo_type: str, repo_id: str) -> dict:
        """``GET /api/{type}s/{repo}/refs``."""
        refs = self.store.load_repo(repo_type, repo_id)["refs"]
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in sorted(refs.items())]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def commits(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        """``GET /api/{type}s/{repo}/commits/{rev}``: the history, newest first."""
        oid = self.store.resolve(repo_type, repo_id, revision)
        return [
            {
                "id": c["oid"],
                "title": c["title"],
                "message": c["message"],
                "authors": [{"user": a} for a in c["authors"]],
                "date": c["date"],
            }
            for c in self.store.history(repo_type, repo_id, oid)
        ]

    # -- files ----------------------------------------------------------------------------------
    def _entry(self, repo_type: str, repo_id: str, head: str, commit: dict, path: str, expand: bool) -> dict:
        fields = file_fields(self.store.blobs.stat(commit["files"][path]), path in commit.get("lfs", ()))
        entry: dict[str, Any] = {"type": "file", "oid": fields["oid"], "size": fields["size"], "path": path}
        if "lfs" in fields:
            entry["lfs"] = {k: fields["lfs"][k] for k in ("oid", "size", "pointerSize")}
        if expand:
            entry["lastCommit"] = self._last_commit(repo_type, repo_id, head, lambda f: f.get(path))
        return entry

    def _dir_entry(self, repo_type: str, repo_id: str, head: str, files: dict, path: str, expand: bool) -> dict:
        def sub(f: dict) -> dict:
            return {p: s for p, s in f.items() if p.startswith(path + "/")}

        oid = hashlib.sha1(json.dumps(sub(files), sort_keys=True).encode()).hexdigest()
        entry: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo_type, repo_id, head, sub)
        return entry

    def _last_commit(self, repo_type: str, repo_id: str, head: str, view: Callable[[dict], Any]) -> dict:
        # Walk back while the selected part of the tree is unchanged.
        last = None
        for commit in self.store.history(repo_type, repo_id, head):
            if last is not None and view(commit["files"]) != view(last["files"]):
                break
            last = commit
        assert last is not None
        return {"id": last["oid"], "title": last["title"], "date": last["date"]}

    def tree(self, repo_type: str, repo_id: str, revision: str, sub: str, recursive: bool, expand: bool) -> list[dict]:
        """``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``: directories first, then files."""
        oid = self.store.resolve(repo_type, repo_id, revision)
        commit = self.store.commit(repo_type, repo_id, oid)
        files = commit["files"]
        sub = sub.strip("/")
        prefix = f"{sub}/" if sub else ""
        under = {p: s for p, s in files.items() if p.startswith(prefix)}
        if sub and not under:
            raise HubHTTPError(404, f"Entry not found: {sub}", "EntryNotFound", {"X-Repo-Commit": oid})
        out, dirs = [], set()
        for path in sorted(under):
            rel_parts = path[len(prefix) :].split("/")
            if not recursive and len(rel_parts) > 1:
                dirs.add(prefix + rel_parts[0])
                continue
            out.append(self._entry(repo_type, repo_id, oid, commit, path, expand))
            if recursive:
                dirs.update(prefix + "/".join(rel_parts[:i]) for i in range(1, len(rel_parts)))
        dir_entries = [self._dir_entry(repo_type, repo_id, oid, files, d, expand) for d in sorted(dirs)]
        return dir_entries + out

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list, expand: bool) -> list[dict]:
        """``POST /api/{type}s/{repo}/paths-info/{rev}``: the entries of the paths that exist."""
        oid = self.store.resolve(repo_type, repo_id, revision)
        commit = self.store.commit(repo_type, repo_id, oid)
        files = commit["files"]
        out = []
        for path in paths:
            path = str(path).strip("/")
            if path in files:
                out.append(self._entry(repo_type, repo_id, oid, commit, path, expand))
            elif any(p.startswith(path + "/") for p in files):
                out.append(self._dir_entry(repo_type, repo_id, oid, files, path, expand))
        return out

    def resolve_file(self, repo_type: str, repo_id: str, revision: str, filename: str) -> tuple[str, str, bool]:
        """The commit oid, blob sha256 and LFS-ness of ``filename`` at ``revision`` (404 if absent)."""
        oid = self.store.resolve(repo_type, repo_id, revision)
        commit = self.store.commit(repo_type, repo_id, oid)
        if filename not in commit["files"]:
            # X-Repo-Commit lets hf_hub_download cache the miss (".no_exist") for this commit.
            raise HubHTTPError(404, f"Entry not found: {filename}", "EntryNotFound", {"X-Repo-Commit": oid})
        return oid, commit["files"][filename], filename in commit.get("lfs", ())

    # -- uploads --------------------------------------------------------------------------------
    def upload_mode(self, size: Any) -> str:
        """``lfs`` for a file over the threshold, else ``regular`` (inline, base64, in the commit)."""
        big = self.lfs_threshold is not None and isinstance(size, int) and size > self.lfs_threshold
        return "lfs" if big else "regular"

    def preupload(self, repo_type: str, repo_id: str, revision: str, payload: dict) -> dict:
        """``POST /api/{type}s/{repo}/preupload/{rev}``: how each file travels (``lfs`` over the threshold)."""
        self.store.load_repo(repo_type, repo_id)
        try:
            commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        except HubHTTPError:
            commit = {"files": {}}  # e.g. a branch that will be created: nothing to compare against
        files, out = commit["files"], []
        for item in payload.get("files", []):
            path, mode = item.get("path"), self.upload_mode(item.get("size"))
            # "oid" of the remote file lets the client skip unchanged files; it compares it with the sha256
            # of its file when that travels as LFS, with the git sha1 when it travels inline.
            oid = None
            if path in files:
                stat = self.store.blobs.stat(files[path])
                oid = stat.sha256 if mode == "lfs" else stat.git_oid
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return {"files": out, "commitOid": None}

    def commit(self, repo_type: str, repo_id: str, branch: str, body: bytes) -> dict:
        """``POST /api/{type}s/{repo}/commit/{branch}``: an NDJSON header line, then one line per operation."""
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError:
            raise HubHTTPError(400, "Commit body is not valid NDJSON") from None
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "Commit body must start with a header line")
        header = lines[0].get("value") or {}
        oid = self.store.apply_commit(
            repo_type,
            repo_id,
            branch,
            lines[1:],
            title=str(header.get("summary") or "Commit"),
            message=str(header.get("description") or ""),
            parent_commit=header.get("parentCommit"),
        )
        return {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{self.base_url()}/{URL_PREFIX[repo_type]}{repo_id}/commit/{oid}",
            "pullRequestUrl": None,
        }
