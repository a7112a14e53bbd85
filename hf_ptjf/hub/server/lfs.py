"""The Git LFS side of the offline Hub: the batch API, the upload PUT and its verify call.

How ``huggingface_hub`` pushes a file that preupload called ``lfs`` (``lfs.py`` / ``_commit_api.py``,
with Xet disabled): it hashes the file (sha256, streamed), POSTs ``{repo}.git/info/lfs/objects/batch``
with ``{oid, size}`` objects and the ``basic`` transfer, PUTs the file to the ``upload`` href it is given
(without the Hub token, like a presigned storage URL), POSTs ``{oid, size}`` to the ``verify`` href, and
finally commits an ``lfsFile`` line naming the oid. An object already stored gets no actions (no upload).

The upload href carries its own authorisation, an HMAC of repo, oid and size under a secret of this
server object; the bytes are written to the blob store as they arrive and kept only if they hash to
the oid (:meth:`~.storage.BlobStore.ingest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Callable, Iterable
from urllib.parse import quote

from .api import URL_PREFIX
from .errors import HubHTTPError
from .storage import SHA256_RE, RepoStore

__all__ = ["LFSAPI"]


class LFSAPI:
    """LFS batch, upload and verify answers over ``store``; hrefs point at ``base_url()``."""

    def __init__(self, store: RepoStore, base_url: Callable[[], str]):
        self.store = store
        self.base_url = base_url
        self._secret = secrets.token_bytes(32)  # signs upload hrefs (the PUT carries no token)

    def _objects_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.base_url()}/{URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects"

    def signature(self, repo_type: str, repo_id: str, oid: str, size: int) -> str:
        """What an upload href for ``oid``/``size`` into this repo must carry."""
        message = f"{repo_type}\n{repo_id}\n{oid}\n{size}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def batch(self, repo_type: str, repo_id: str, payload: dict) -> dict:
        """``POST {repo}.git/info/lfs/objects/batch``: upload actions for the objects not stored yet."""
        self.store.load_repo(repo_type, repo_id)  # 404 for an unknown repo
        if payload.get("operation") != "upload":
            raise HubHTTPError(400, "The offline hub's LFS batch API only takes uploads (operation: upload)")
        if "basic" not in (payload.get("transfers") or ["basic"]):
            raise HubHTTPError(400, "The offline hub's LFS batch API only offers the basic transfer")
        if payload.get("hash_algo", "sha256") != "sha256":
            raise HubHTTPError(400, "The offline hub's LFS objects are named by sha256")
        objects = [self._batch_object(repo_type, repo_id, obj) for obj in payload.get("objects") or []]
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _batch_object(self, repo_type: str, repo_id: str, obj: Any) -> dict:
        oid = str(obj.get("oid", "")) if isinstance(obj, dict) else ""
        size = obj.get("size") if isinstance(obj, dict) else None
        if not SHA256_RE.match(oid) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return {"oid": oid, "size": size if isinstance(size, int) else 0,
                    "error": {"code": 422, "message": "oid must be a sha256 in hex and size a byte count"}}
        if self.store.blobs.has(oid, size):
            return {"oid": oid, "size": size}  # no actions: already stored, the client skips the upload
        base = self._objects_url(repo_type, repo_id)
        sig = self.signature(repo_type, repo_id, oid, size)
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {
                "upload": {"href": f"{base}/{oid}/{size}?sig={quote(sig)}"},
                "verify": {"href": f"{base}/verify"},
            },
        }

    def upload(self, repo_type: str, repo_id: str, oid: str, size: int, sig: str, chunks: Iterable[bytes]) -> None:
        """``PUT`` of an upload href: stream ``chunks`` into the blob store, kept only if they hash to ``oid``."""
        if not hmac.compare_digest(sig, self.signature(repo_type, repo_id, oid, size)):
            raise HubHTTPError(403, "LFS upload URL is not valid (ask the batch API for a new one)")
        self.store.blobs.ingest(chunks, oid, size)

    def verify(self, repo_type: str, repo_id: str, payload: dict) -> dict:
        """``POST {repo}.git/info/lfs/objects/verify``: 200 if ``{oid, size}`` is stored, else 404."""
        self.store.load_repo(repo_type, repo_id)
        oid, size = str(payload.get("oid", "")), payload.get("size")
        if not SHA256_RE.match(oid) or not self.store.blobs.has(oid, size if isinstance(size, int) else None):
            raise HubHTTPError(404, f"LFS object {oid} ({size} bytes) is not stored: upload it first")
        return {}
