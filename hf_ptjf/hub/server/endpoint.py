"""Pointing ``huggingface_hub`` and ``transformers`` at a Hub server (this process, or a subprocess).

``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import time (``constants.ENDPOINT``/
``HUGGINGFACE_CO_URL_TEMPLATE``, the module-level ``HfApi`` behind ``huggingface_hub.create_repo`` & co,
and transformers' cached ``hf_api()``), so setting the variable later has no effect.  Use
:func:`use_endpoint` in-process (it patches all of those and restores them), or :func:`hub_endpoint_env`
for the environment of a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from huggingface_hub import constants
from huggingface_hub import hf_api as hf_api_module

__all__ = ["hub_endpoint_env", "use_endpoint"]


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
