"""boto3 clients for the operator CLI, built one way: bounded timeouts, standard retries, our user agent.

AWS_ENDPOINT_URL (and the per-service variants) are honoured by botocore itself, so an emulator is
reached exactly as real AWS is; a malformed one is refused in one line before any client is made.

Every call is bounded: botocore's defaults (60 s read timeout, and the CLI used to allow 8 attempts)
let an endpoint that accepts and never answers hold `backupctl list` for nine minutes. Here one call
gives up after TOTAL_MAX_ATTEMPTS attempts of at most CONNECT_TIMEOUT + READ_TIMEOUT seconds each,
plus standard mode's jittered backoff (at most 1, 2, 4 s between them): about 1.5 minutes at worst.
Long waits (snapshot completion, restore tasks) are loops of such short calls and keep their own
--timeout. AWS_MAX_ATTEMPTS, the SDKs' own variable, overrides the attempt count.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from scripts.errors import UsageError

CONNECT_TIMEOUT = 5     # seconds to open a TCP/TLS connection
READ_TIMEOUT = 20       # seconds of silence on an open connection (per socket read, not per call)
TOTAL_MAX_ATTEMPTS = 4  # first try included
MAX_BACKOFF = 1 + 2 + 4  # standard mode sleeps up to base * 2**(attempt-1), base 1 s, between attempts


def total_max_attempts() -> int:
    """AWS_MAX_ATTEMPTS when set to a whole number from 1 to 10, else TOTAL_MAX_ATTEMPTS."""
    value = os.environ.get("AWS_MAX_ATTEMPTS", "")
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 10:
        return int(value)
    return TOTAL_MAX_ATTEMPTS


def worst_case_seconds() -> float:
    """How long one call can take before it fails (documented in docs/cli-audit-cost-demo.md)."""
    return total_max_attempts() * (CONNECT_TIMEOUT + READ_TIMEOUT) + MAX_BACKOFF


def _retries() -> dict[str, Any]:
    # Standard retry mode: exponential backoff with jitter for throttling and transient errors.
    return {"mode": "standard", "total_max_attempts": total_max_attempts()}


ENDPOINT_RULE = "must be an http:// or https:// URL with a host name and an optional port from 1 to 65535"


def check_endpoints(environ: Optional[dict[str, str]] = None) -> None:
    """AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>: refuse a malformed one in one line naming
    the variable (botocore raises a bare ValueError deep inside client creation or the first call)."""
    env = os.environ if environ is None else environ
    for variable in sorted(v for v in env if v == "AWS_ENDPOINT_URL" or v.startswith("AWS_ENDPOINT_URL_")):
        value = env[variable]
        reason = ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError when out of range or not a number
            good = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)
        except ValueError as e:
            good, reason = False, f" ({e})"
        if not good:
            shown = value if len(value) <= 200 else value[:200] + "..."
            raise UsageError(f"{variable} {shown!r}: {ENDPOINT_RULE}{reason}")


def _announce_retries(client: Any, say: Callable[[str], None]) -> None:
    """One progress line per retry, naming the call, the endpoint and why the last attempt failed:
    an unanswered call otherwise looks like a hang for a minute and a half."""
    endpoint = client.meta.endpoint_url

    def remember(request_dict: dict[str, Any], caught_exception: Optional[BaseException] = None,
                 response: Any = None, **_: Any) -> None:
        if caught_exception is not None:
            why = str(caught_exception).splitlines()[0] if str(caught_exception) else type(caught_exception).__name__
        elif response is not None:
            why = f"HTTP {response[0].status_code}"
        else:
            return
        request_dict["context"]["quickport_last_failure"] = why

    def announce(request: Any, operation_name: str, **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        attempt = context.get("retries", {}).get("attempt", 1)
        if attempt > 1:
            say(f"{operation_name} at {endpoint}: {context.get('quickport_last_failure', 'failed')}; "
                f"retrying (attempt {attempt} of {total_max_attempts()})")

    client.meta.events.register("needs-retry", remember)
    client.meta.events.register("request-created", announce)


def _stderr_line(message: str) -> None:
    print(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%SZ} {message}", file=sys.stderr, flush=True)


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
            check_endpoints()
            if self._session is None:
                self._session = boto3.session.Session()
            try:
                client = self._session.client(service, region_name=region, config=_config())
            except ValueError as e:   # e.g. a malformed endpoint_url in ~/.aws/config
                raise UsageError(f"AWS endpoint for {service}: {e}; {ENDPOINT_RULE}") from None
            _announce_retries(client, _stderr_line)
            self._clients[key] = client
        return self._clients[key]


def _config() -> Config:
    # S3 bodies carry a CRC32 that S3 checks (the dump agent sends its own per part), under TLS: SigV4
    # need not SHA-256 them again, as botocore already skips for its own checksummed streaming uploads.
    return Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, retries=_retries(),
                  user_agent_extra="quickport-backup", s3={"payload_signing_enabled": False})


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
