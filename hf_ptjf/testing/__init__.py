"""Test helpers: a local Hub-compatible server (:mod:`hf_ptjf.testing.hub_server`) for tests and offline demos."""

from .hub_server import FAKE_USER, Faults, HubServer, RequestRecord, hub_endpoint_env, use_endpoint

__all__ = ["FAKE_USER", "Faults", "HubServer", "RequestRecord", "hub_endpoint_env", "use_endpoint"]
