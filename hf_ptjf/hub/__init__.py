"""The Hub handoff: a client that pushes, verifies and loads stage outputs at pinned revisions
(:mod:`~hf_ptjf.hub.client`), and the Hub-compatible offline server the main job pushes to
(:mod:`~hf_ptjf.hub.server`)."""

from .client import (
    HubError,
    current_endpoint,
    metrics_by_task,
    push_folder,
    redact,
    repo_exists,
    snapshot_at,
    unreachable,
    verify_revision,
    write_model_card,
)

# the server loads on first use, so that `python -m hf_ptjf.hub.server` runs it without a second import
_SERVER = ("FAKE_USER", "HubServer", "Intercept", "RequestRecord", "hub_endpoint_env", "use_endpoint")


def __getattr__(name: str):
    if name in _SERVER:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'hf_ptjf.hub' has no attribute {name!r}")


__all__ = [
    "FAKE_USER",
    "HubError",
    "HubServer",
    "Intercept",
    "RequestRecord",
    "current_endpoint",
    "hub_endpoint_env",
    "metrics_by_task",
    "push_folder",
    "redact",
    "repo_exists",
    "snapshot_at",
    "unreachable",
    "use_endpoint",
    "verify_revision",
    "write_model_card",
]
