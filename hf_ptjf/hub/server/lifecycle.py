"""The offline Hub's lifecycle: the :class:`HubServer` object (start, stop, serve) and the
``python -m hf_ptjf.hub.server`` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .api import DEFAULT_LFS_THRESHOLD, HubAPI
from .intercept import Intercept, RequestRecord
from .lfs import LFSAPI
from .routes import HubHTTPServer
from .storage import RepoStore

__all__ = ["HubServer", "main"]


@dataclass
class HubServer:
    """A Hub-compatible server on ``host:port`` (``port=0``: pick a free one) storing repos under ``root``.

    Use as a context manager (``with HubServer(tmp) as hub: ...``) or call :meth:`start`/:meth:`stop`;
    after :meth:`stop`, :meth:`start` serves again on the same port (to simulate an outage).
    ``require_token``: if set, every request must carry ``Authorization: Bearer <require_token>``,
    others get 401; if None, any (or no) token is accepted.
    ``lfs_threshold``: files larger than this many bytes are pushed through LFS (streamed to the blob store),
    smaller ones inline in the commit, as on the Hub; None: every file inline (the old, in-memory path).
    """

    root: str | Path
    host: str = "127.0.0.1"
    port: int = 0
    require_token: str | None = field(default=None, repr=False)
    lfs_threshold: int | None = DEFAULT_LFS_THRESHOLD
    # called with (method, path) before each request is handled; an Intercept replaces the handling
    intercept: Callable[[str, str], Intercept | None] | None = field(default=None, init=False, repr=False)
    requests: list[RequestRecord] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = RepoStore(self.root)
        self.api = HubAPI(self.store, lambda: self.url, self.require_token, self.lfs_threshold)
        self.lfs = LFSAPI(self.store, lambda: self.url)
        self._httpd: HubHTTPServer | None = None
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

    @property
    def stopping(self) -> bool:
        """True while :meth:`stop` runs (delayed requests give up)."""
        return self._stopping.is_set()

    def wait_unless_stopping(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the server is being stopped."""
        self._stopping.wait(seconds)

    def start(self) -> "HubServer":
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = HubHTTPServer((self.host, self.port), self)
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
    def record(self, request: RequestRecord) -> None:
        """Log ``request`` (called by the HTTP layer on arrival)."""
        with self._log_lock:
            self.requests.append(request)

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
        return self.store.blobs.path(self.store.commit(repo_type, repo_id, oid)["files"][filename])


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Hub-compatible offline server (the main job, demos and tests).",
    )
    parser.add_argument("--root", required=True, help="directory holding the repos (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--require-token-env",
        metavar="VAR",
        help="name of an environment variable holding the only accepted token (keeps it out of `ps`)",
    )
    parser.add_argument(
        "--lfs-threshold",
        type=int,
        default=DEFAULT_LFS_THRESHOLD,
        metavar="BYTES",
        help=f"files larger than this go through LFS uploads, streamed to disk (default {DEFAULT_LFS_THRESHOLD})",
    )
    parser.add_argument(
        "--no-lfs", action="store_true", help="every file inline in the commit body, held in memory (for comparisons)"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m hf_ptjf.hub.server") -> int:
    """``python -m hf_ptjf.hub.server --root DIR --port N`` (or ``hf-ptjf hub ...``): print the URL, serve until
    interrupted."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    token = os.environ.get(args.require_token_env) if args.require_token_env else None
    if args.require_token_env and not token:
        parser.error(f"environment variable {args.require_token_env} is empty")
    threshold = None if args.no_lfs else args.lfs_threshold
    server = HubServer(args.root, host=args.host, port=args.port, require_token=token, lfs_threshold=threshold)

    def on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    server.start()
    print(server.url, flush=True)
    print(f"# export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1  (this Hub takes large files through LFS, not Xet)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
