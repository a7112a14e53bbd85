"""A small Hugging Face Hub-compatible HTTP server: the offline Hub of the main job, demos and tests.

It speaks the subset of the Hub HTTP API that ``huggingface_hub`` (checked against 2.4) and
``transformers`` use to create repos, push commits (small files inline, large ones through LFS) and
download pinned revisions, so the real clients can be exercised end to end without internet.  It is
*not* a Hub: no git, no Xet, no real auth, no pull requests, everything in one process.

One concept per module:

* :mod:`.storage`: the blob store (uploads streamed to disk, hashed as they arrive) and the commit
  manifests on disk (``RepoStore``);
* :mod:`.api`: what each Hub API route answers (``HubAPI``), :mod:`.lfs`: the Git LFS batch API, upload
  and verify (``LFSAPI``), :mod:`.routes`: the HTTP plumbing and route table;
* :mod:`.lifecycle`: :class:`HubServer` (start, stop, serve) and the ``python -m hf_ptjf.hub.server`` command;
* :mod:`.intercept`: outage drills (``Intercept``, the request log), :mod:`.endpoint`: pointing clients here.

Endpoints served (model, dataset and space repos)::

    GET  /api/whoami-v2                          POST /api/repos/create   DELETE /api/repos/delete
    POST /api/validate-yaml
    GET  /api/{type}s/{repo}[/revision/{rev}]    (repo_info / model_info, ?blobs=true)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}] (list_repo_tree / list_repo_files, ?recursive)
    POST /api/{type}s/{repo}/paths-info/{rev}    (get_paths_info)
    POST /api/{type}s/{repo}/preupload/{rev}     ("lfs" over lfs_threshold, 10 MiB by default; else "regular")
    POST /[datasets/|spaces/]{repo}.git/info/lfs/objects/batch        (basic transfer: upload + verify hrefs)
    PUT  /[datasets/|spaces/]{repo}.git/info/lfs/objects/{oid}/{size}  (signed href; sha256 checked, else 400)
    POST /[datasets/|spaces/]{repo}.git/info/lfs/objects/verify
    POST /api/{type}s/{repo}/commit/{rev}        (NDJSON: header, file, lfsFile (uploaded oids only),
                                                   deletedFile, deletedFolder; parentCommit -> 412 if stale)
    GET  /api/{type}s/{repo}/refs                GET /api/{type}s/{repo}/commits/{rev}
    POST /api/{type}s/{repo}/branch/{branch}
    GET|HEAD /[datasets/|spaces/]{repo}/resolve/{rev}/{path}   (Range supported)

How files travel: a small file is base64-encoded inside the commit NDJSON; a file over the threshold is
PUT as an LFS object, written to the blob store as it arrives (never held in memory) and kept only if its
sha256 is the announced oid; the commit then names it by oid.  Downloads are plain HTTP GETs, streamed:
``ETag`` is the git blob sha1 (of the LFS pointer, for LFS files, which also get ``X-Linked-Etag`` = the
sha256 and ``X-Linked-Size``, as on the Hub), and no ``X-Xet-Hash`` is sent, so clients never try Xet.

Xet: huggingface_hub 2.x uploads large files through Xet whenever ``hf_xet`` is installed and has no
server-driven fallback, so the server answers the Xet token routes with a 404 naming the fix and the
client must disable Xet: :func:`use_endpoint` and :func:`hub_endpoint_env` set ``HF_HUB_DISABLE_XET``, and
:func:`hf_ptjf.hub.push_folder` switches it off itself when the endpoint grants no Xet token.  Without
Xet, ``upload_folder`` also takes the classic single-commit path, so commit requests map one-to-one
onto push attempts.

Pointing clients at the server: :func:`use_endpoint` in-process, :func:`hub_endpoint_env` for the
environment of a subprocess (``huggingface_hub`` reads ``HF_ENDPOINT`` only at import).

Outage drills: ``server.intercept`` (a callable of method and path returning an :class:`Intercept`)
fails, delays or drops chosen requests (the test suite's fault queues plug in there); ``server.stop()``
(then ``start()`` again, same port) simulates an outage.  ``server.requests`` logs every request.

CLI: ``python -m hf_ptjf.hub.server --root DIR [--port N]`` prints the URL and serves until interrupted.
"""

from .api import HubAPI
from .endpoint import hub_endpoint_env, use_endpoint
from .errors import HubHTTPError
from .intercept import Intercept, RequestRecord
from .lfs import LFSAPI
from .lifecycle import HubServer, main
from .storage import FAKE_USER, REPO_TYPES, RepoStore

__all__ = [
    "FAKE_USER",
    "HubAPI",
    "HubHTTPError",
    "HubServer",
    "Intercept",
    "LFSAPI",
    "REPO_TYPES",
    "RepoStore",
    "RequestRecord",
    "hub_endpoint_env",
    "main",
    "use_endpoint",
]
