"""The offline Hub's HTTP layer: request plumbing (bodies, errors, interception) and the route table.

What each route answers is :class:`~.api.HubAPI`'s business; this module only parses requests, applies
the server's ``intercept`` hook (outage drills), and writes answers, streaming file downloads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Iterator, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from .api import file_fields, truthy
from .errors import HubHTTPError
from .intercept import RequestRecord

__all__ = ["HubHTTPServer", "RequestBody"]

logger = logging.getLogger(__name__)

_API_REPO_RE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
_RESOLVE_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_LFS_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+?)\.git/info/lfs/objects/(batch|verify|([0-9a-f]{64})/(\d+))$")
_CHUNK = 1 << 20


class RequestBody:
    """A request body read from ``rfile`` (``Content-Length`` or chunked): whole, or chunk by chunk."""

    def __init__(self, rfile: BinaryIO, headers: Mapping[str, str]):
        self._rfile = rfile
        self._chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._left = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self.done = not self._chunked and self._left == 0
        self._data: bytes | None = None

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        """The body in pieces of at most ``size`` bytes; raises ConnectionError if it ends early."""
        while not self.done:
            if self._chunked and self._left == 0:
                self._left = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
                if self._left == 0:
                    while self._rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self.done = True
                    return
            data = self._rfile.read(min(size, self._left))
            if not data:
                raise ConnectionError("request body ended early (client went away)")
            self._left -= len(data)
            if self._chunked and self._left == 0:
                self._rfile.readline()  # CRLF after each chunk
            elif not self._chunked and self._left == 0:
                self.done = True
            yield data

    def read(self) -> bytes:
        """The whole body (read once, then remembered); not for uploads, which are streamed."""
        if self._data is None:
            self._data = b"".join(self.chunks())
        return self._data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every answer has a Content-Length
    server_version = "hf-ptjf-offline-hub/1"
    timeout = 60  # idle keep-alive connections are closed after this

    server: "HubHTTPServer"

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
        self._request_record.status = status

    def _json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubHTTPError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json({"error": err.message, **err.extra}, err.status, headers)

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
        hub.record(self._request_record)
        body = RequestBody(self.rfile, self.headers)
        upload = self.command == "PUT" and _LFS_RE.match(path) is not None
        try:
            if not upload:
                body.read()  # drain first, so that the connection can be reused whatever the answer
            if not self._intercepted(path):
                if not upload:  # an upload href carries its own signature, not the Hub token
                    hub.api.check_auth(self.headers.get("Authorization"), path)
                self._route(path, parse_qs(urlsplit(self.path).query), body)
        except HubHTTPError as err:
            self._error(err)
        except ConnectionError:  # broken pipe, reset, a body cut short: the client went away
            self.close_connection = True
        except Exception as exc:  # a bug here must show up as a 500, not a hung client
            logger.exception("offline hub: unhandled error on %s %s", self.command, self.path)
            self._error(HubHTTPError(500, f"Internal error in the offline hub: {type(exc).__name__}"))
        if not body.done:
            self.close_connection = True  # an upload answered before its body was read: never read GBs to drop them

    def _intercepted(self, path: str) -> bool:
        """Apply the server's ``intercept`` rule for this request; True if it replaced the handling."""
        hub = self.server.hub
        rule = hub.intercept(self.command, path) if hub.intercept is not None else None
        self._request_record.fault = rule.kind if rule is not None else None
        if rule is None:
            return False
        if rule.kind == "delay":
            hub.wait_unless_stopping(rule.seconds)
            if hub.stopping or self._client_gone():
                self.close_connection = True
                return True
            return False
        if rule.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        msg = f"Intercepted: HTTP {rule.status}"
        self._send(rule.status, json.dumps({"error": msg}).encode(), {"X-Error-Message": msg})
        return True

    # -- routing --------------------------------------------------------------------------------
    def _route(self, path: str, query: dict, request: RequestBody) -> None:
        api, method = self.server.hub.api, self.command
        if (m := _LFS_RE.match(path)) and method in ("POST", "PUT"):
            return self._lfs(m, query, request)
        body = request.read()
        if path == "/api/whoami-v2" and method == "GET":
            return self._json(api.whoami())
        if path == "/api/validate-yaml" and method == "POST":
            return self._json({"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            return self._json(api.create_repo(_load_json(body)))
        if path == "/api/repos/delete" and method == "DELETE":
            return self._json(api.delete_repo(_load_json(body)))
        if m := _API_REPO_RE.match(path):
            return self._api_repo(m.group(1)[:-1], m.group(2), m.group(3) or "", query, body)
        if (m := _RESOLVE_RE.match(path)) and method in ("GET", "HEAD"):
            repo_type = (m.group(1) or "models")[:-1]
            return self._resolve(repo_type, m.group(2), unquote(m.group(3)), unquote(m.group(4)))
        raise HubHTTPError(404, f"No such endpoint on the offline hub: {method} {path}")

    def _api_repo(self, repo_type: str, repo_id: str, rest: str, query: dict, body: bytes) -> None:
        api, method = self.server.hub.api, self.command
        verb, _, arg = rest.partition("/")
        flag = lambda name: truthy(query.get(name, ["false"])[0])  # noqa: E731
        if method == "GET" and rest == "":
            return self._json(api.repo_info(repo_type, repo_id, "main", flag("blobs")))
        if method == "GET" and verb == "revision":
            return self._json(api.repo_info(repo_type, repo_id, unquote(arg), flag("blobs")))
        if method == "GET" and verb == "tree":
            rev, _, sub = arg.partition("/")
            return self._json(api.tree(repo_type, repo_id, unquote(rev), unquote(sub), flag("recursive"), flag("expand")))
        if method == "POST" and verb == "paths-info":
            paths, expand = self._paths_form(body)
            return self._json(api.paths_info(repo_type, repo_id, unquote(arg), paths, expand))
        if method == "POST" and verb == "preupload":
            return self._json(api.preupload(repo_type, repo_id, unquote(arg), _load_json(body)))
        if method == "POST" and verb == "commit":
            if flag("create_pr"):
                raise HubHTTPError(400, "Pull requests are not supported by the offline hub")
            return self._json(api.commit(repo_type, repo_id, unquote(arg), body))
        if method == "GET" and verb == "refs":
            return self._json(api.refs(repo_type, repo_id))
        if method == "GET" and verb == "commits":
            return self._json(api.commits(repo_type, repo_id, unquote(arg)))
        if method == "POST" and verb == "branch":
            return self._json(api.create_branch(repo_type, repo_id, unquote(arg), _load_json(body)))
        if verb in ("xet-write-token", "xet-read-token"):
            raise HubHTTPError(404, "The offline hub does not speak Xet: large files go through LFS. Set "
                                    "HF_HUB_DISABLE_XET=1 (hf_ptjf.hub.push_folder and use_endpoint do it for you)")
        raise HubHTTPError(404, f"No such endpoint on the offline hub: {method} /api/{repo_type}s/{repo_id}/{rest}")

    def _lfs(self, match: re.Match, query: dict, request: RequestBody) -> None:
        lfs, repo_type = self.server.hub.lfs, (match.group(1) or "models")[:-1]
        repo_id, action, oid, size = match.group(2), match.group(3), match.group(4), match.group(5)
        if self.command == "PUT" and oid is not None:
            sig = query.get("sig", [""])[0]
            lfs.upload(repo_type, repo_id, oid, int(size), sig, request.chunks())
            return self._send(200, b"", {"Content-Type": "text/plain"})
        if self.command == "POST" and action == "batch":
            answer = lfs.batch(repo_type, repo_id, _load_json(request.read()))
            return self._json(answer, headers={"Content-Type": "application/vnd.git-lfs+json"})
        if self.command == "POST" and action == "verify":
            return self._json(lfs.verify(repo_type, repo_id, _load_json(request.read())))
        raise HubHTTPError(404, f"No such endpoint on the offline hub: {self.command} {self.path}")

    def _paths_form(self, body: bytes) -> tuple[list, bool]:
        # get_paths_info posts a form; accept JSON too
        if "json" in self.headers.get("Content-Type", ""):
            form = _load_json(body)
            return form.get("paths", []), truthy(form.get("expand"))
        form = parse_qs(body.decode())
        return form.get("paths", []), truthy(form.get("expand", ["false"])[0])

    # -- downloads ------------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str) -> None:
        store = self.server.hub.store
        oid, sha256, lfs = self.server.hub.api.resolve_file(repo_type, repo_id, revision, filename)
        stat = store.blobs.stat(sha256)
        fields = file_fields(stat, lfs)
        headers = {
            "X-Repo-Commit": oid,
            "ETag": f'"{fields["oid"]}"',  # the git oid: of the content, or of the LFS pointer
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if lfs:  # as the Hub's LFS answers: the client names the cached blob after the content's sha256
            headers.update({"X-Linked-Etag": f'"{stat.sha256}"', "X-Linked-Size": str(stat.size)})
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
            self._send_file_range(store.blobs.path(sha256), start, end - start + 1)
        self._request_record.status = status

    def _send_file_range(self, path: Any, start: int, length: int) -> None:
        with open(path, "rb") as fh:
            fh.seek(start)
            while length > 0 and (chunk := fh.read(min(_CHUNK, length))):
                self.wfile.write(chunk)
                length -= len(chunk)


def _load_json(body: bytes) -> dict:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise HubHTTPError(400, "Body is not valid JSON") from None


class HubHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server for ``hub`` that can cut its open keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: Any):  # the lifecycle.HubServer that owns it (no import: a cycle)
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
        """Cut every open connection."""
        # Keep-alive handler threads outlive serve_forever(); cut their sockets so a stopped
        # server really looks down to clients holding pooled connections.
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
