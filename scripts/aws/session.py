"""boto3 clients for the operator CLI, built one way: standard retries, our user agent.

AWS_ENDPOINT_URL (and the per-service variants) are honoured by botocore itself, so an emulator is
reached exactly as real AWS is.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import boto3
from botocore.config import Config

# Standard retry mode: exponential backoff with jitter for throttling and transient errors.
RETRIES = {"mode": "standard", "max_attempts": 8}


class ClientFactory:
    """Clients by service and region, built once per invocation from one boto3 session."""

    def __init__(self, overrides: Optional[dict[str, Any]] = None):
        self._session: Optional[boto3.session.Session] = None
        self._clients: dict[str, Any] = {}
        # Pre-built clients by service name (tests and the demo: a Stubber'd "ec2" for APIs the
        # emulator lacks). Empty in normal use.
        self.overrides = dict(overrides or {})

    def client(self, service: str, region: str) -> Any:
        if service in self.overrides:
            return self.overrides[service]
        key = f"{service}@{region}"
        if key not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session()
            self._clients[key] = self._session.client(service, region_name=region, config=_config())
        return self._clients[key]


def _config() -> Config:
    return Config(retries=RETRIES, user_agent_extra="quickport-backup")


_shared_session: Optional[boto3.session.Session] = None


def new_client(service: str, region: str) -> Any:
    """A new client configured as the CLI configures its own, from one boto3 session shared by the
    process (the stand-in account and the tests make many clients; a new session costs a fifth of a
    second to load its models). Each client is new: a stubber on one never reaches another. The
    endpoint (AWS_ENDPOINT_URL) is read when the client is made."""
    global _shared_session
    if _shared_session is None:
        _shared_session = boto3.session.Session()
    return _shared_session.client(service, region_name=region, config=_config())


def forget_shared_session() -> None:
    """Drop the shared session (it caches credentials and config file paths): the emulator's
    isolated environment calls this on entry and exit, so nothing of the machine's leaks in."""
    global _shared_session
    _shared_session = None


@functools.lru_cache(maxsize=None)
def partition_of(region: str) -> str:
    """aws, aws-cn or aws-us-gov: the partition an ARN in this region names."""
    return boto3.session.Session().get_partition_for_region(region)
