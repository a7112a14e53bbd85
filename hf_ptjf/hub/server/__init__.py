"""A small Hugging Face Hub-compatible HTTP server: the offline Hub of the main job, demos and tests.

It speaks the subset of the Hub HTTP API that ``huggingface_hub`` (checked against 2.4) and
``transformers`` use to create repos, push commits and download pinned revisions, so the real
clients can be exercised end to end without internet.  It is *not* a Hub: no git, no LFS/Xet,
no real auth, no pull requests, everything in one process, every file inline in commits.

One concept per module:

* :mod:`.storage`: the blob store and the commit manifests on disk (``RepoStore``);
* :mod:`.api`: what each route answers (``HubAPI``), :mod:`.routes`: the HTTP plumbing and route table;
* :mod:`.lifecycle`: :class:`HubServer` (start, stop, serve) and the ``python -m hf_ptjf.hub.server`` command;
* :mod:`.intercept`: outage drills (``Intercept``, the request log), :mod:`.endpoint`: pointing clients here.

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
from .lifecycle import HubServer, main
from .storage import FAKE_USER, REPO_TYPES, RepoStore

__all__ = [
    "FAKE_USER",
    "HubAPI",
    "HubHTTPError",
    "HubServer",
    "Intercept",
    "REPO_TYPES",
    "RepoStore",
    "RequestRecord",
    "hub_endpoint_env",
    "main",
    "use_endpoint",
]
