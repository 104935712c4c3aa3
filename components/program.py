"""Reads the stack config through the Pulumi SDK and declares the whole strategy."""
from __future__ import annotations

import pulumi

from components.config import NAMESPACE, TOP_LEVEL_KEYS, ConfigError, StackConfig, parse_config

_OBJECT_KEYS = {"backup", "recycleBin", "baselines", "dumps", "files"}


def read_config() -> StackConfig:
    """Parse `quickport-backup:*` and `aws:region` from the engine's config; raises ConfigError."""
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
