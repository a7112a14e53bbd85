"""A small Hugging Face Hub-compatible HTTP server: the offline Hub of the main job, demos and tests.

It speaks the subset of the Hub HTTP API that ``huggingface_hub`` (checked against 2.4) and
``transformers`` use to create repos, push commits and download pinned revisions, so the real
clients can be exercised end to end without internet.  It is *not* a Hub: no git, no LFS/Xet,
no real auth, no pull requests, everything in one process, every file inline in commits.

Storage (under ``root``), no git needed:

* ``blobs/<sha256>``: file contents, content-addressed;
* ``repos/<type>s/<namespace>/<name>/repo.json``: branches (``refs``) and metadata;
* ``repos/.../commits/<oid>.json``: one manifest per commit (``{path: sha256}``, parents,
  message); commit oids are random-salted 40-hex sha1s, like git's.

Hashes and sizes are recomputed from the blob bytes on disk whenever they are reported, so a
blob tampered with on disk shows up as a changed file (``verify_revision`` relies on that).

Endpoints served (model, dataset and space repos)::

    GET  /api/whoami-v2                          POST /api/repos/create   DELETE /api/repos/delete
    POST /api/validate-yaml
    GET  /api/{type}s/{repo}[/revision/{rev}]    (repo_info / model_info, ?blobs=true)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}] (list_repo_tree / list_repo_files, ?recursive)
    POST /api/{type}s/{repo}/paths-info/{rev}    (get_paths_info)
    POST /api/{type}s/{repo}/preupload/{rev}     (always answers uploadMode "regular")
    POST /api/{type}s/{repo}/commit/{rev}        (NDJSON: header, file, lfsFile*, deletedFile,
                                                   deletedFolder; parentCommit -> 412 if stale)
    GET  /api/{type}s/{repo}/refs                GET /api/{type}s/{repo}/commits/{rev}
    POST /api/{type}s/{repo}/branch/{branch}
    GET|HEAD /[datasets/|spaces/]{repo}/resolve/{rev}/{path}   (Range supported)

(*) ``lfsFile`` only for content already in the blob store (e.g. server-side copies).

Why the client never touches LFS or Xet here: preupload answers ``"regular"`` for every file, so
contents travel base64-encoded inside the commit NDJSON; resolve responses carry no
``X-Xet-Hash``/``X-Linked-*`` headers, so downloads are plain HTTP GETs where, as on the real Hub
for non-LFS files, ``ETag`` is the git blob sha1 and ``Content-Length`` the size.  ``upload_folder``
takes a different (pipelined) code path when ``hf_xet`` is installed; :func:`use_endpoint` sets
``HF_HUB_DISABLE_XET`` so the classic single-commit path runs and commit requests map one-to-one
onto push attempts.

Pointing clients at the server: ``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import time
(``constants.ENDPOINT``/``HUGGINGFACE_CO_URL_TEMPLATE``, the module-level ``HfApi`` behind
``huggingface_hub.create_repo`` & co, and transformers' cached ``hf_api()``), so setting the
variable later has no effect.  Use :func:`use_endpoint` in-process (it patches all of those and
restores them), or :func:`hub_endpoint_env` for the environment of a subprocess.

Outage drills: ``server.intercept`` (a callable of method and path returning an :class:`Intercept`)
fails, delays or drops chosen requests (the test suite's fault queues plug in there); ``server.stop()``
(then ``start()`` again, same port) simulates an outage.  ``server.requests`` logs every request.

CLI: ``python -m hf_ptjf.hub.server --root DIR [--port N]`` prints the URL and serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from ..files import atomic_write_bytes

__all__ = [
    "FAKE_USER",
    "Intercept",
    "HubServer",
    "RequestRecord",
    "hub_endpoint_env",
    "use_endpoint",
]

logger = logging.getLogger(__name__)

FAKE_USER = "test-user"
REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# What the Hub puts in a fresh repo (shortened): a new repo always has one commit, so "main" resolves.
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_sha1(data: bytes) -> str:
    # The oid git (and the Hub, for non-LFS files) reports: sha1 over "blob <size>\0" + content.
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class HubHTTPError(Exception):
    """An error answer: HTTP status, message and the Hub's ``X-Error-Code`` (drives client exceptions)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # more fields for the JSON body


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileStat:
    size: int
    sha256: str  # of the bytes on disk now (differs from the blob name if tampered with)
    git_oid: str


class RepoStore:
    """On-disk repos: JSON commit manifests over a content-addressed blob store (thread-safe)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._stat_cache: dict[tuple[str, int, int], _FileStat] = {}

    # -- blobs --------------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write_bytes(path, data)
        return digest

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def stat(self, sha256: str) -> _FileStat:
        """Size and hashes of a blob as stored now; cached on (path, mtime, size)."""
        path = self.blob_path(sha256)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        cached = self._stat_cache.get(key)
        if cached is None:
            data = path.read_bytes()
            cached = _FileStat(len(data), hashlib.sha256(data).hexdigest(), _git_blob_sha1(data))
            self._stat_cache[key] = cached
        return cached

    # -- repos ----------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts):  # also keeps paths inside root
            raise HubHTTPError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def load_repo(self, repo_type: str, repo_id: str) -> dict:
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
            repo = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": _now(), "refs": {}}
            self._save_repo(repo_type, repo_id, repo)
            files = {".gitattributes": self.put_blob(_GITATTRIBUTES)}
            self._write_commit(repo_type, repo_id, repo, "main", files, [], "initial commit", "")
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            self.load_repo(repo_type, repo_id)  # 404 if missing
            shutil.rmtree(self._repo_dir(repo_type, repo_id))

    def commit(self, repo_type: str, repo_id: str, oid: str) -> dict:
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
        with self._lock:
            repo = self.load_repo(repo_type, repo_id)
            if branch in repo["refs"]:
                raise HubHTTPError(409, f"Reference {branch} already exists")
            if _COMMIT_RE.match(branch):
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
                if _COMMIT_RE.match(branch):
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
            files[path] = self.put_blob(base64.b64decode(value.get("content", "")))
        elif key == "lfsFile":
            oid = str(value.get("oid", ""))
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not self.blob_path(oid).exists():
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
            "date": _now(),
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


# --------------------------------------------------------------------------------------------
# Interception (outage drills; tests put their fault queues here)
# --------------------------------------------------------------------------------------------


@dataclass
class Intercept:
    """What to do with a request instead of handling it: ``fail`` (answer ``status``), ``delay`` (stall
    ``seconds``, then handle it unless the client gave up) or ``drop`` (close the connection unanswered)."""

    kind: str
    status: int = 503
    seconds: float = 0.0


@dataclass
class RequestRecord:
    """One request seen by the server, logged on arrival; ``status`` is filled in when answered."""

    method: str
    path: str
    status: int | None = None  # stays None if dropped (or still in flight)
    fault: str | None = None  # "fail" | "delay" | "drop" if the request was intercepted


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

_API_REPO_RE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
_RESOLVE_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("1", "true", "yes")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every answer has a Content-Length
    server_version = "hf-ptjf-offline-hub/1"
    timeout = 60  # idle keep-alive connections are closed after this

    server: "_HTTPServer"

    # -- plumbing -----------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, status: int | None) -> None:
        self._request_record.status = status

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self._record(status)

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubHTTPError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message, **err.extra}, headers)

    def _client_gone(self) -> bool:
        # Readable with no data = the peer closed (e.g. its timeout fired during our delay).
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _dispatch(self) -> None:
        hub = self.server.hub
        path = urlsplit(self.path).path
        self._request_record = RequestRecord(self.command, path)
        hub._record(self._request_record)
        try:
            body = self._read_body()  # always drain first: the connection is reused
            rule = hub.intercept(self.command, path) if hub.intercept is not None else None
            self._request_record.fault = rule.kind if rule is not None else None
            if rule is not None and rule.kind == "delay":
                hub._stopping.wait(rule.seconds)
                if hub._stopping.is_set() or self._client_gone():
                    self.close_connection = True
                    return
            elif rule is not None and rule.kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            elif rule is not None:
                msg = f"Intercepted: HTTP {rule.status}"
                self._send(rule.status, json.dumps({"error": msg}).encode(), {"X-Error-Message": msg})
                return
            hub._check_auth(self.headers.get("Authorization"), path)
            self._route(path, parse_qs(urlsplit(self.path).query), body)
        except HubHTTPError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # client went away
        except Exception as exc:  # a bug here must show up as a 500, not a hung client
            logger.exception("offline hub: unhandled error on %s %s", self.command, self.path)
            self._error(HubHTTPError(500, f"Internal error in the offline hub: {type(exc).__name__}"))

    # -- routing --------------------------------------------------------------------------------
    def _route(self, path: str, query: dict, body: bytes) -> None:
        hub, method = self.server.hub, self.command
        if path == "/api/whoami-v2" and method == "GET":
            return self._json(200, hub._whoami())
        if path == "/api/validate-yaml" and method == "POST":
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(self._load_json(body))
        if path == "/api/repos/delete" and method == "DELETE":
            payload = self._load_json(body)
            repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
            hub.store.delete_repo(payload.get("type") or "model", repo_id)
            return self._json(200, {})
        if m := _API_REPO_RE.match(path):
            return self._api_repo(m.group(1)[:-1], m.group(2), m.group(3) or "", query, body)
        if (m := _RESOLVE_RE.match(path)) and method in ("GET", "HEAD"):
            repo_type = (m.group(1) or "models")[:-1]
            return self._resolve(repo_type, m.group(2), unquote(m.group(3)), unquote(m.group(4)))
        raise HubHTTPError(404, f"No such endpoint on the offline hub: {method} {path}")

    @staticmethod
    def _load_json(body: bytes) -> dict:
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise HubHTTPError(400, "Body is not valid JSON") from None

    def _create_repo(self, payload: dict) -> None:
        repo_type = payload.get("type") or "model"
        name, org = str(payload.get("name", "")), payload.get("organization") or FAKE_USER
        if repo_type not in REPO_TYPES or not _NAME_RE.match(name) or not _NAME_RE.match(org):
            raise HubHTTPError(400, f"Invalid repo name or type: {org}/{name} ({repo_type})")
        repo_id = f"{org}/{name}"
        url = f"{self.server.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.server.hub.store.create_repo(repo_type, repo_id, private):
            # create_repo(exist_ok=True) reads "url" from this 409 body.
            raise HubHTTPError(409, "You already created this repo", extra={"url": url})
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _api_repo(self, repo_type: str, repo_id: str, rest: str, query: dict, body: bytes) -> None:
        hub, method = self.server.hub, self.command
        verb, _, arg = rest.partition("/")
        if method == "GET" and rest == "":
            return self._json(200, hub._repo_info(repo_type, repo_id, "main", query))
        if method == "GET" and verb == "revision":
            return self._json(200, hub._repo_info(repo_type, repo_id, unquote(arg), query))
        if method == "GET" and verb == "tree":
            rev, _, sub = arg.partition("/")
            recursive = _truthy(query.get("recursive", ["false"])[0])
            expand = _truthy(query.get("expand", ["false"])[0])
            return self._json(200, hub._tree(repo_type, repo_id, unquote(rev), unquote(sub), recursive, expand))
        if method == "POST" and verb == "paths-info":
            if "json" in self.headers.get("Content-Type", ""):
                form = self._load_json(body)
                paths, expand = form.get("paths", []), _truthy(form.get("expand"))
            else:
                form = parse_qs(body.decode())
                paths, expand = form.get("paths", []), _truthy(form.get("expand", ["false"])[0])
            return self._json(200, hub._paths_info(repo_type, repo_id, unquote(arg), paths, expand))
        if method == "POST" and verb == "preupload":
            return self._json(200, hub._preupload(repo_type, repo_id, unquote(arg), self._load_json(body)))
        if method == "POST" and verb == "commit":
            if _truthy(query.get("create_pr", ["0"])[0]):
                raise HubHTTPError(400, "Pull requests are not supported by the offline hub")
            return self._json(200, hub._commit(repo_type, repo_id, unquote(arg), body))
        if method == "GET" and verb == "refs":
            return self._json(200, hub._refs(repo_type, repo_id))
        if method == "GET" and verb == "commits":
            return self._json(200, hub._commits(repo_type, repo_id, unquote(arg)))
        if method == "POST" and verb == "branch":
            start = self._load_json(body).get("startingPoint")
            hub.store.create_branch(repo_type, repo_id, unquote(arg), start)
            return self._json(200, {})
        raise HubHTTPError(404, f"No such endpoint on the offline hub: {method} /api/{repo_type}s/{repo_id}/{rest}")

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str) -> None:
        store = self.server.hub.store
        oid = store.resolve(repo_type, repo_id, revision)
        files = store.commit(repo_type, repo_id, oid)["files"]
        if filename not in files:
            # X-Repo-Commit lets hf_hub_download cache the miss (".no_exist") for this commit.
            raise HubHTTPError(404, f"Entry not found: {filename}", "EntryNotFound", {"X-Repo-Commit": oid})
        stat = store.stat(files[filename])
        headers = {
            "X-Repo-Commit": oid,
            "ETag": f'"{stat.git_oid}"',  # non-LFS semantics: git blob sha1, no X-Linked-Etag/Size
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, end, status = 0, stat.size - 1, 200
        if (rng := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())) is not None:
            start = int(rng.group(1))
            end = min(int(rng.group(2)), stat.size - 1) if rng.group(2) else stat.size - 1
            if start >= stat.size:
                headers["Content-Range"] = f"bytes */{stat.size}"
                raise HubHTTPError(416, "Requested range not satisfiable", headers=headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{stat.size}"
        headers["Content-Length"] = str(max(end - start + 1, 0))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            with open(store.blob_path(files[filename]), "rb") as fh:
                fh.seek(start)
                remaining = end - start + 1
                while remaining > 0 and (chunk := fh.read(min(1 << 20, remaining))):
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        self._record(status)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: "HubServer"):
        self.hub = hub
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):  # type: ignore[override]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[override]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        # Keep-alive handler threads outlive serve_forever(); cut their sockets so a stopped
        # server really looks down to clients holding pooled connections.
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------------------------
# Public server object
# --------------------------------------------------------------------------------------------


@dataclass
class HubServer:
    """A Hub-compatible server on ``host:port`` (``port=0``: pick a free one) storing repos under ``root``.

    Use as a context manager (``with HubServer(tmp) as hub: ...``) or call :meth:`start`/:meth:`stop`;
    after :meth:`stop`, :meth:`start` serves again on the same port (to simulate an outage).
    ``require_token``: if set, every request must carry ``Authorization: Bearer <require_token>``,
    others get 401; if None, any (or no) token is accepted.
    """

    root: str | Path
    host: str = "127.0.0.1"
    port: int = 0
    require_token: str | None = field(default=None, repr=False)
    # called with (method, path) before each request is handled; an Intercept replaces the handling
    intercept: Callable[[str, str], Intercept | None] | None = field(default=None, init=False, repr=False)
    requests: list[RequestRecord] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = RepoStore(self.root)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._log_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:45678`` (what ``HF_ENDPOINT`` should be)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> "HubServer":
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"offline-hub-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (clients then get connection errors)."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until interrupted (used by the CLI)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    # -- introspection for tests ---------------------------------------------------------------
    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self.requests.append(record)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """Number of requests received matching ``method`` and ``path_contains`` (faulted/in-flight included)."""
        with self._log_lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path_contains is None or path_contains in r.path)
            )

    def blob_path(self, repo_id: str, filename: str, revision: str = "main", repo_type: str = "model") -> Path:
        """Path on disk of the blob holding ``filename`` at ``revision`` (to tamper with in tests)."""
        oid = self.store.resolve(repo_type, repo_id, revision)
        return self.store.blob_path(self.store.commit(repo_type, repo_id, oid)["files"][filename])

    # -- request handlers (called from _Handler) -------------------------------------------------
    def _check_auth(self, authorization: str | None, path: str) -> None:
        token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        # Never echo the token back: it would end up in client exceptions and logs.
        if self.require_token is not None and token != self.require_token:
            msg = "Invalid credentials in Authorization header"
            raise HubHTTPError(401, msg)
        if path == "/api/whoami-v2" and not token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _whoami(self) -> dict:
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

    def _entry(self, repo_type: str, repo_id: str, head: str, path: str, sha256: str, expand: bool) -> dict:
        stat = self.store.stat(sha256)
        entry: dict[str, Any] = {"type": "file", "oid": stat.git_oid, "size": stat.size, "path": path}
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

    def _last_commit(self, repo_type: str, repo_id: str, head: str, view: Any) -> dict:
        # Walk back while the selected part of the tree is unchanged.
        last = None
        for commit in self.store.history(repo_type, repo_id, head):
            if last is not None and view(commit["files"]) != view(last["files"]):
                break
            last = commit
        assert last is not None
        return {"id": last["oid"], "title": last["title"], "date": last["date"]}

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, query: dict) -> dict:
        repo = self.store.load_repo(repo_type, repo_id)
        oid = self.store.resolve(repo_type, repo_id, revision)
        commit = self.store.commit(repo_type, repo_id, oid)
        blobs = _truthy(query.get("blobs", ["false"])[0])
        siblings = []
        for path, sha256 in commit["files"].items():
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                stat = self.store.stat(sha256)
                sibling.update(size=stat.size, blobId=stat.git_oid)
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

    def _tree(
        self, repo_type: str, repo_id: str, revision: str, sub: str, recursive: bool, expand: bool
    ) -> list[dict]:
        oid = self.store.resolve(repo_type, repo_id, revision)
        files = self.store.commit(repo_type, repo_id, oid)["files"]
        sub = sub.strip("/")
        prefix = f"{sub}/" if sub else ""
        under = {p: s for p, s in files.items() if p.startswith(prefix)}
        if sub and not under:
            raise HubHTTPError(404, f"Entry not found: {sub}", "EntryNotFound", {"X-Repo-Commit": oid})
        out, dirs = [], set()
        for path, sha256 in sorted(under.items()):
            rel_parts = path[len(prefix) :].split("/")
            if not recursive and len(rel_parts) > 1:
                dirs.add(prefix + rel_parts[0])
                continue
            out.append(self._entry(repo_type, repo_id, oid, path, sha256, expand))
            if recursive:
                dirs.update(prefix + "/".join(rel_parts[:i]) for i in range(1, len(rel_parts)))
        dir_entries = [self._dir_entry(repo_type, repo_id, oid, files, d, expand) for d in sorted(dirs)]
        return dir_entries + out

    def _paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list, expand: bool) -> list[dict]:
        oid = self.store.resolve(repo_type, repo_id, revision)
        files = self.store.commit(repo_type, repo_id, oid)["files"]
        out = []
        for path in paths:
            path = str(path).strip("/")
            if path in files:
                out.append(self._entry(repo_type, repo_id, oid, path, files[path], expand))
            elif any(p.startswith(path + "/") for p in files):
                out.append(self._dir_entry(repo_type, repo_id, oid, files, path, expand))
        return out

    def _preupload(self, repo_type: str, repo_id: str, revision: str, payload: dict) -> dict:
        self.store.load_repo(repo_type, repo_id)
        try:
            files = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))["files"]
        except HubHTTPError:
            files = {}  # e.g. a branch that will be created: nothing to compare against
        out = []
        for item in payload.get("files", []):
            path = item.get("path")
            # "oid" of the remote file lets the client skip unchanged files (git sha1 for regular files).
            oid = self.store.stat(files[path]).git_oid if path in files else None
            out.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return {"files": out, "commitOid": None}

    def _commit(self, repo_type: str, repo_id: str, branch: str, body: bytes) -> dict:
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
            "commitUrl": f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}/commit/{oid}",
            "pullRequestUrl": None,
        }

    def _refs(self, repo_type: str, repo_id: str) -> dict:
        refs = self.store.load_repo(repo_type, repo_id)["refs"]
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in sorted(refs.items())]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
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


# --------------------------------------------------------------------------------------------
# Pointing huggingface_hub / transformers at a server
# --------------------------------------------------------------------------------------------


def hub_endpoint_env(url: str, *, disable_xet: bool = True) -> dict[str, str]:
    """Environment variables that point a *new* process's HF clients at ``url``.

    Merge into ``os.environ.copy()`` for a subprocess; in the current process use :func:`use_endpoint`,
    because ``huggingface_hub`` only reads ``HF_ENDPOINT`` when it is imported.
    """
    env = {"HF_ENDPOINT": url.rstrip("/"), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    if disable_xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    return env


@contextlib.contextmanager
def use_endpoint(url: str, *, cache_dir: str | Path | None = None, disable_xet: bool = True) -> Iterator[str]:
    """Point ``huggingface_hub`` and ``transformers`` in this process at ``url``, then restore everything.

    Patches (import-time snapshots of ``HF_ENDPOINT``): ``huggingface_hub.constants.ENDPOINT``,
    ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_URL_HOSTS``, the module-level ``HfApi`` behind
    ``huggingface_hub.create_repo`` & co, transformers' cached ``hf_api()`` (reset so it is rebuilt),
    and ``datasets.config.HF_ENDPOINT`` if datasets is loaded; sets ``HF_ENDPOINT`` in ``os.environ``
    for child processes; forces online mode (the server is local).  ``disable_xet`` sets
    ``HF_HUB_DISABLE_XET`` (hf_xet would otherwise pick upload_folder's pipelined path);
    ``cache_dir`` redirects the download cache (``HF_HUB_CACHE``) so tests don't share it.
    Not thread-safe: the patches are process-wide.
    """
    from huggingface_hub import constants
    from huggingface_hub import hf_api as hf_api_module

    url = url.rstrip("/")
    host = urlsplit(url).hostname or ""
    saved_env = {k: os.environ.get(k) for k in hub_endpoint_env(url)}
    patches: list[tuple[Any, str, Any]] = [
        (constants, "ENDPOINT", url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {host.lower()}),
        (constants, "HF_HUB_OFFLINE", False),
        (hf_api_module.api, "endpoint", url),
    ]
    if disable_xet:
        patches.append((constants, "HF_HUB_DISABLE_XET", True))
    if cache_dir is not None:
        patches.append((constants, "HF_HUB_CACHE", str(cache_dir)))
    if (ds_config := sys.modules.get("datasets.config")) is not None:
        patches.append((ds_config, "HF_ENDPOINT", url))
        patches.append((ds_config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]

    def reset_transformers_api() -> None:
        # transformers caches one HfApi (endpoint frozen at creation): drop it so it is rebuilt.
        if (tf_hub := sys.modules.get("transformers.utils.hub")) is not None and hasattr(tf_hub, "_hf_api"):
            tf_hub._hf_api = None

    try:
        os.environ.update(hub_endpoint_env(url, disable_xet=disable_xet))
        for obj, name, value in patches:
            setattr(obj, name, value)
        reset_transformers_api()
        yield url
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_transformers_api()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hf_ptjf.hub.server --root DIR --port N``: serve until interrupted."""
    parser = argparse.ArgumentParser(description="Hub-compatible offline server (the main job, demos and tests).")
    parser.add_argument("--root", required=True, help="directory holding the repos (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--require-token-env",
        metavar="VAR",
        help="name of an environment variable holding the only accepted token (keeps it out of `ps`)",
    )
    args = parser.parse_args(argv)
    token = os.environ.get(args.require_token_env) if args.require_token_env else None
    if args.require_token_env and not token:
        parser.error(f"environment variable {args.require_token_env} is empty")
    server = HubServer(args.root, host=args.host, port=args.port, require_token=token)

    def on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    server.start()
    print(server.url, flush=True)
    print(f"# export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
