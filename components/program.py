"""Reads the stack config through the Pulumi SDK and declares the whole strategy."""
from __future__ import annotations

import pulumi

from components.config import TOP_LEVEL_KEYS, StackConfig, parse_config
from components.errors import ConfigError
from components.tags import NAMESPACE

_OBJECT_KEYS = {"backup", "recycleBin", "baselines", "dumps", "files", "guardRails", "ebsEncryption", "monitoring",
                "binlog"}


def _reject_unknown_keys() -> None:
    """A misspelt `quickport-backup:*` key stops the program instead of leaving the default in force.

    The Pulumi CLI hands a Python program its config in PULUMI_CONFIG; the mock engine sets it in the
    runtime (pulumi.Config reads both the same way). The value is not shown: it may be a secret,
    which the engine hands over decrypted."""
    from pulumi.runtime import config as runtime_config
    prefix = f"{NAMESPACE}:"
    given = {**(runtime_config.get_config_env() or {}), **runtime_config.CONFIG.get()}
    ours = {key[len(prefix):] for key in given if key.startswith(prefix)}
    unknown = sorted(ours - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; allowed keys are " + ", ".join(TOP_LEVEL_KEYS))


def read_config() -> StackConfig:
    """Parse `quickport-backup:*` and `aws:region` from the engine's config; raises ConfigError."""
    _reject_unknown_keys()
    ours = pulumi.Config(NAMESPACE)
    raw = {}
    for key in TOP_LEVEL_KEYS:
        try:
            value = ours.get_object(key) if key in _OBJECT_KEYS else ours.get(key)
        except Exception as e:  # the SDK's own error for malformed JSON objects
            raise ConfigError(f"{NAMESPACE}:{key}: {e}") from None
        if value is not None:
            raw[key] = value
    return parse_config(raw, region=pulumi.Config("aws").get("region"), stack=pulumi.get_stack())


def main() -> None:
    try:
        cfg = read_config()
    except ConfigError as e:
        # RunError: the CLI prints the one line, without a Python traceback, and declares nothing.
        raise pulumi.RunError(str(e)) from None
    from components.stack import declare_stack
    declare_stack(cfg)
